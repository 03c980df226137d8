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

int main()
{
    using namespace std::chrono_literals;
    fifolock::mutex m;
    fifolock::shared_mutex s;
    fifolock::thread_lock t;
    fifolock::event_lock e;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(1);

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
