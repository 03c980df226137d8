/*
 * A tiny test harness: CHECK_EQ and friends print both values and the line,
 * count the failure and go on; RUN_TESTS(TEST(a), TEST(b), ...) is main(): it
 * runs every test, or only those named on the command line
 * (`test_engine cancelled_head_unblocks_readers_behind_it`), and exits
 * non-zero when any check failed or a name matched no test.
 */
#ifndef FIFOLOCK_TEST_CHECK_H
#define FIFOLOCK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static const char *check_current = "";

#define CHECK_OP(a, op, b)                                                               \
    do {                                                                                 \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                  \
        if (!(check_a_ op check_b_)) {                                                   \
            fprintf(stderr, "%s:%d: %s: expected %s %s %s, got %lld vs %lld\n", __FILE__, \
                    __LINE__, check_current, #a, #op, #b, check_a_, check_b_);           \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)

#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)
#define CHECK_NE(a, b) CHECK_OP(a, !=, b)
#define CHECK_LE(a, b) CHECK_OP(a, <=, b)
#define CHECK_LT(a, b) CHECK_OP(a, <, b)
#define CHECK_TRUE(x) CHECK_OP(!!(x), ==, 1)
#define CHECK_FALSE(x) CHECK_OP(!!(x), ==, 0)

#define CHECK_NULL_STR(s)                                                                \
    do {                                                                                 \
        const char *check_s_ = (s);                                                      \
        if (check_s_ != NULL) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, check_current, #s, \
                    check_s_);                                                           \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)

typedef void check_test_fn(void);
struct check_test {
    const char *name;
    check_test_fn *fn;
};

/* Whether test `name` is one of those asked for (all when none are). */
static inline int check_wanted(const char *name, int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return argc <= 1;
}

#define RUN_TESTS(...)                                                                   \
    int main(int argc, char **argv)                                                      \
    {                                                                                    \
        static const struct check_test tests_[] = { __VA_ARGS__ };                      \
        size_t i_, ran_ = 0, failed_ = 0;                                                \
        for (i_ = 0; i_ < sizeof tests_ / sizeof tests_[0]; i_++) {                      \
            int before_ = check_failures;                                                \
            if (!check_wanted(tests_[i_].name, argc, argv))                              \
                continue;                                                                \
            ran_++;                                                                      \
            check_current = tests_[i_].name;                                             \
            tests_[i_].fn();                                                             \
            if (check_failures != before_) {                                             \
                failed_++;                                                               \
                fprintf(stderr, "FAIL %s\n", tests_[i_].name);                           \
            }                                                                            \
        }                                                                                \
        if (ran_ < (size_t)(argc > 1 ? argc - 1 : 0) || (argc > 1 && ran_ == 0)) {       \
            fprintf(stderr, "no such test among those named\n");                         \
            failed_++;                                                                   \
        }                                                                                \
        printf("%zu passed, %zu failed\n", ran_ - (failed_ > ran_ ? ran_ : failed_),     \
               failed_);                                                                 \
        return failed_ ? 1 : 0;                                                          \
    }

#define TEST(name) { #name, name }

#endif
