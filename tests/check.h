/*
 * A tiny test harness: CHECK_EQ and friends print both values and the line,
 * count the failure and go on; TEST_MAIN runs every registered test and
 * exits non-zero when any check failed.
 */
#ifndef FIFOLOCK_TEST_CHECK_H
#define FIFOLOCK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

#define RUN_TESTS(...)                                                                   \
    int main(void)                                                                       \
    {                                                                                    \
        static const struct check_test tests_[] = { __VA_ARGS__ };                      \
        size_t i_, failed_ = 0;                                                          \
        for (i_ = 0; i_ < sizeof tests_ / sizeof tests_[0]; i_++) {                      \
            int before_ = check_failures;                                                \
            check_current = tests_[i_].name;                                             \
            tests_[i_].fn();                                                             \
            if (check_failures != before_) {                                             \
                failed_++;                                                               \
                fprintf(stderr, "FAIL %s\n", tests_[i_].name);                           \
            }                                                                            \
        }                                                                                \
        printf("%zu passed, %zu failed\n", sizeof tests_ / sizeof tests_[0] - failed_,   \
               failed_);                                                                 \
        return failed_ ? 1 : 0;                                                          \
    }

#define TEST(name) { #name, name }

#endif
