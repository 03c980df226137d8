/*
 * A C++ program that uses fifolock.hpp the way somebody else's project does:
 * built against the installed headers and library only (tests/install/run.sh
 * builds it with pkg-config's flags). Prints one line and exits 0 if every
 * call behaves as documented.
 */
#include <fifolock.hpp>

#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <thread>

int main()
{
    int failures = 0;
    auto expect = [&](bool ok, const char *what) {
        if (!ok) {
            std::fprintf(stderr, "consumer.cpp: %s\n", what);
            failures++;
        }
    };
    fifolock::mutex m;
    fifolock::shared_mutex s;
    fifolock::thread_lock t;
    fifolock::event_lock e;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(2);

    {
        std::scoped_lock both(m, s);
        bool other = true;
        std::thread([&] { other = m.try_lock() || s.try_lock_shared(); }).join();
        expect(!other, "scoped_lock holds both");
    }
    {
        std::shared_lock<fifolock::shared_mutex> r1(s), r2(s);
        expect(fifolock_mt_held(s.native_handle(), &fifolock_read) == 2, "readers share");
    }
    {
        fifolock::guard a(t, sem), b(t, sem), c(t, sem, std::try_to_lock);
        expect(a && b && !c, "a semaphore of 2 through guards");
    }
    {
        fifolock::hold w = e.try_acquire(fifolock_write);
        expect(w.owns() && !e.try_acquire(fifolock_read), "event-loop lock: write excludes read");
    }
    expect(e.held(fifolock_write) == 0 && t.held(sem) == 0, "holds released on destruction");
    if (failures) {
        std::printf("consumer.cpp: %d checks failed\n", failures);
        return 1;
    }
    std::printf("consumer.cpp: fifolock %s ok: fifolock.hpp\n", FIFOLOCK_VERSION_STRING);
    return 0;
}
