/*
 * fifolock.hpp compiles cleanly on its own: built by tests/cpp.cmake as
 * C++17 and C++20 with -Wall -Wextra -Werror -pedantic and more
 * (-Wconversion, -Wold-style-cast, ...), and once with -fno-exceptions.
 * Linked with test_cpp_plain_c.cpp. Every template is instantiated here, so that its warnings show; the
 * calls never block. Prints one line, exits 0.
 */
#include <fifolock.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <shared_mutex>

namespace {

int failures;

void expect(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "test_cpp_header: %s\n", what);
        failures++;
    }
}

struct callback {
    int calls = 0;
    void operator()(fifolock::request &) { calls++; }
};

void on_granted(fifolock::request &, void *arg)
{
    ++*static_cast<int *>(arg);
}

} // namespace

/* In test_cpp_plain_c.cpp, which includes fifolock_mt.h and not this header. */
std::size_t plain_c_holders(fifolock_mt *lock, const fifolock_mode *mode);
bool plain_c_global_is_new_and_works();

/*
 * Locks used before main, at static-init time. In a file, dynamic
 * initialisation runs in the order of the definitions, and constant
 * initialisation before all of it. `early` is defined before the locks it
 * takes: their constructors are constexpr (constinit in C++20), so they are
 * ready when it runs; with run-time constructors they would run after it,
 * over its holds, and main would find them free.
 */
extern fifolock::mutex global_mutex;
extern fifolock::shared_mutex global_shared;

namespace {

struct early_user {
    bool locked = false, shared = false;
    early_user()
    {
        locked = global_mutex.try_lock();
        shared = global_shared.try_lock_shared() && global_shared.try_lock_shared();
    }
};

early_user early;

} // namespace

#if __cplusplus >= 202002L
constinit fifolock::mutex global_mutex;
constinit fifolock::shared_mutex global_shared;
#else
fifolock::mutex global_mutex; /* constant-initialized all the same: constexpr constructor */
fifolock::shared_mutex global_shared;
#endif

int main()
{
    using namespace std::chrono_literals;
    fifolock::mutex m;
    fifolock::shared_mutex s;
    fifolock::thread_lock t;
    fifolock::event_lock e;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(1);

    {
        /* what `early` took before main is held still */
        expect(early.locked && !global_mutex.try_lock() &&
                   plain_c_holders(global_mutex.native_handle(), &fifolock_mutex) == 1,
               "a global mutex locked at static-init time is held in main");
        global_mutex.unlock();
        expect(global_mutex.try_lock(), "a global mutex unlocked in main");
        global_mutex.unlock();
        expect(early.shared && !global_shared.try_lock() &&
                   plain_c_holders(global_shared.native_handle(), &fifolock_read) == 2,
               "a global shared_mutex locked shared at static-init time is held in main");
        global_shared.unlock_shared();
        global_shared.unlock_shared();
        std::unique_lock<fifolock::shared_mutex> x(global_shared);
        expect(x.owns_lock(), "a global shared_mutex locked in main");
        expect(plain_c_global_is_new_and_works(), "FIFOLOCK_MT_INITIALIZER in C++");
    }
    {
        std::unique_lock<fifolock::mutex> a(m, std::chrono::steady_clock::now() + 1ms);
        expect(a.owns_lock(), "unique_lock until");
        expect(plain_c_holders(m.native_handle(), &fifolock_mutex) == 1,
               "the C types are the same with and without fifolock.hpp");
        expect(!m.try_lock_for(1us), "try_lock_for a held mutex");
        expect(!m.try_lock_until(std::chrono::system_clock::now()), "try_lock_until a held mutex");
    }
    {
        std::shared_lock<fifolock::shared_mutex> r(s, 1ms);
        expect(s.try_lock_shared_until(std::chrono::system_clock::now() + 1ms), "shared until");
        s.unlock_shared();
        expect(!s.try_lock_for(0ms) && !s.try_lock_until(std::chrono::steady_clock::now()),
               "exclusive while shared");
    }
    {
        std::scoped_lock both(m, s);
    }
    {
        fifolock::guard g(t, sem, 1ms);
        fifolock::guard h(t, sem, std::chrono::system_clock::now());
        expect(g.owns_lock() && !h.owns_lock(), "guards on a semaphore of 1");
        expect(!t.try_acquire_for(sem, 1ms) && !t.try_acquire(sem), "thread_lock while held");
        expect(!h.try_lock_until(std::chrono::steady_clock::now()), "guard until");
    }
    {
        int calls = 0;
        callback cb;
        fifolock::request r1, r2;
        fifolock::hold w = e.try_acquire(fifolock_write);
        expect(!r1.acquire(e, fifolock_read, cb) && !r2.acquire(e, fifolock_read, on_granted, &calls),
               "requests queue");
        w.release();
        expect(cb.calls == 1 && calls == 1 && e.held(fifolock_read) == 2, "requests granted");
    }
    std::printf("test_cpp_header: fifolock.hpp, C++%ld%s: %s\n", __cplusplus / 100 % 100,
#if defined(__cpp_exceptions)
                "",
#else
                " without exceptions",
#endif
                failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
