/*
 * The C headers first, then fifolock.hpp (test_cpp_header.cpp and
 * test_cpp.cpp include them the other way round): both orders compile, the
 * event-loop lock's C type is fifolock_lock (and fifolock_c_lock, its name of
 * fifolock.hpp 1.0) in C++, no macro renames `fifolock`, and the C calls and
 * the C++ classes work on one lock. Built by tests/cpp.cmake with the
 * strict warnings of the header test. Prints one line, exits 0.
 */
#include <fifolock.h>
#include <fifolock_mt.h>

/* Declared with the C type before fifolock.hpp is seen. */
static int c_side_try(fifolock_lock *lock, const fifolock_mode *mode)
{
    return fifolock_try_acquire(lock, mode);
}

#include <fifolock.hpp>

#include <cerrno>
#include <cstdio>
#include <type_traits>

#ifdef fifolock
#error "a macro named fifolock leaked out of the fifolock headers"
#endif
#ifdef fifolock_c_lock
#error "fifolock_c_lock is a macro, not a type"
#endif

static_assert(std::is_same<fifolock_c_lock, fifolock_lock>::value,
              "fifolock_c_lock names the C event-loop lock, as in fifolock.hpp 1.0");
static_assert(std::is_same<fifolock::event_lock::native_handle_type, fifolock_lock *>::value,
              "event_lock's native handle is the C lock");
static_assert(std::is_standard_layout<fifolock_lock>::value, "the C lock is a C struct");

namespace {

int failures;

void expect(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "test_cpp_c_header_first: %s\n", what);
        failures++;
    }
}

} // namespace

int main()
{
    fifolock_lock c_lock;
    fifolock::event_lock e;
    fifolock::mutex m;

    fifolock_init(&c_lock);
    expect(c_side_try(&c_lock, &fifolock_write) == 0, "the C lock is taken by a C call");
    expect(fifolock_try_acquire(&c_lock, &fifolock_read) == EBUSY, "and held");
    expect(fifolock_release(&c_lock, &fifolock_write) == 0 && fifolock_destroy(&c_lock) == 0,
           "and released");
    {
        fifolock::hold h = e.try_acquire(fifolock_write);
        expect(static_cast<bool>(h), "event_lock takes a mode");
        expect(c_side_try(e.native_handle(), &fifolock_read) == EBUSY,
               "a C call sees the event_lock's hold through native_handle()");
    }
    expect(fifolock_held_total(fifolock_holds_of(e.native_handle())) == 0,
           "the hold went with its scope");
    expect(m.try_lock(), "fifolock::mutex beside the C headers");
    expect(fifolock_mt_held(m.native_handle(), &fifolock_mutex) == 1, "seen by the C call");
    m.unlock();
    std::printf("test_cpp_c_header_first: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
