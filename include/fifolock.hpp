/*
 * fifolock.hpp: the fifolock for C++17, header-only over the C library.
 *
 *   fifolock::mutex         a TimedMutex, strictly FIFO (fifolock_mt, one
 *                           mode: fifolock_mutex)
 *   fifolock::shared_mutex  a SharedTimedMutex, strictly FIFO: writers and
 *                           readers in one queue (fifolock_write,
 *                           fifolock_read), so neither starves the other
 *   fifolock::thread_lock   a fifolock_mt for any modes (intention locks,
 *                           semaphores, your own)
 *   fifolock::guard         RAII: one hold of any mode of a thread_lock
 *   fifolock::event_lock    the event-loop lock (fifolock.h), with RAII holds:
 *   fifolock::hold            one hold of one mode, released on destruction
 *   fifolock::request         a queued request (the C waiter), cancelled or
 *                             released on destruction
 *
 * std::unique_lock, std::shared_lock, std::scoped_lock, std::lock and
 * std::condition_variable_any work with mutex and shared_mutex unchanged.
 * Order, handoff and the meaning of every call are those of the C library
 * (fifolock_mt.h, fifolock.h): a request is granted only after every request
 * queued before it, so try_lock() and try_lock_shared() fail while anybody
 * waits, even if the lock could be shared now (the standard allows try_lock
 * to fail spuriously). Holds belong to the lock, not to threads. Weighted
 * requests and conversions: the C calls (fifolock_mt_acquire_n(),
 * fifolock_mt_convert(), ...) on native_handle(). Wherever fifolock_mt
 * builds (docs/platforms.md).
 *
 * Deadlines. try_lock_for() and the timed guards measure time on the steady
 * clock. try_lock_until() takes a time point of any clock: it converts the
 * time left on that clock into a CLOCK_MONOTONIC deadline and, if that
 * deadline passes while the clock says time is still left (a clock that was
 * set back, or runs slow), it asks again, as the standard allows for clocks
 * that are not steady; each new ask joins the tail of the queue. A time that
 * has already passed makes one try without blocking.
 *
 * Errors. What the standard makes an error throws std::system_error with the
 * C library's errno value in std::generic_category(): lock() and friends
 * for EINVAL, ENOMEM or EAGAIN (for the ready-made modes of mutex and
 * shared_mutex none can happen), the guard's misuse as std::unique_lock's.
 * A mode that even a lock nobody holds refuses (a semaphore of size 0, a
 * user's predicate that says no to an empty lock) can never be granted:
 * every call of thread_lock, guard, event_lock and request throws EDEADLK
 * at once instead of waiting for ever, try_acquire() and try_lock() too,
 * and nothing is queued. Predicates must be monotone: fewer holders never
 * make a mode incompatible (fifolock.h).
 * unlock(), try_lock() and their shared forms are noexcept. Nothing throws
 * on the fast path; built with -fno-exceptions, what would throw calls
 * std::abort() instead.
 *
 * The C API in C++. In C the event-loop lock is `fifolock` (struct
 * fifolock), and C++ cannot have a type and a namespace of one name in one
 * scope. So in C++ fifolock.h names that type `fifolock_lock` only (also
 * fifolock_c_lock, its name in fifolock.hpp 1.0): the same layout, the same
 * functions and symbols. Every other C name (fifolock_mt, fifolock_mode,
 * fifolock_mutex, fifolock_mt_acquire, the macros, ...) is the global one it
 * is in C. The C headers and this one may be included in any order; no
 * macro of this header renames anything.
 */
#ifndef FIFOLOCK_HPP
#define FIFOLOCK_HPP

#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <system_error>
#include <type_traits>
#include <utility>

#include "fifolock.h"
#include "fifolock_mt.h"

/* Checks of the caller's own contract (unlock() of a lock it does not hold,
   destroying a lock in use): undefined behaviour for the standard's
   mutexes, harmless for fifolock (the C call refuses and changes nothing),
   asserted here. Define FIFOLOCK_HPP_ASSERT before including to change it. */
#ifndef FIFOLOCK_HPP_ASSERT
#define FIFOLOCK_HPP_ASSERT(cond) assert(cond)
#endif

namespace fifolock {

namespace detail {

/* Throws what the standard throws for `err`: a std::system_error. */
[[noreturn]] inline void fail(int err, const char *what)
{
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    throw std::system_error(err, std::generic_category(), what);
#else
    (void)err;
    (void)what;
    std::abort();
#endif
}

/* The longest single wait asked of the C library (about 31 years): longer
   ones wait this long, then again. Keeps the timespec arithmetic exact. */
constexpr long long max_wait_seconds = 1000000000LL;

/* CLOCK_MONOTONIC now plus `ns`, with 0 <= ns <= max_wait_seconds. */
inline timespec monotonic_after(long long ns) noexcept
{
    timespec t{};

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += static_cast<time_t>(ns / 1000000000LL);
    t.tv_nsec += static_cast<long>(ns % 1000000000LL);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* A CLOCK_MONOTONIC deadline `rel` from now, for rel > 0 (rounded up to a
   nanosecond, so never early); sets `capped` when rel exceeds the longest
   single wait and the deadline is that instead. */
template <class Rep, class Period>
timespec deadline_after(const std::chrono::duration<Rep, Period> &rel, bool &capped)
{
    capped = std::chrono::duration<double>(rel).count() >= static_cast<double>(max_wait_seconds);
    if (capped)
        return monotonic_after(max_wait_seconds * 1000000000LL);
    return monotonic_after(std::chrono::ceil<std::chrono::nanoseconds>(rel).count());
}

/* fifolock_mt_timed_acquire() for `rel` on the steady clock: 0, ETIMEDOUT
   or the C library's error. A time <= 0 makes one try. A request that
   would be granted at once (nobody waits, the mode fits) is, by
   fifolock_mt_try_acquire(), before any clock is read. */
template <class Rep, class Period>
int acquire_for(::fifolock_mt *lock, const ::fifolock_mode *mode,
                const std::chrono::duration<Rep, Period> &rel)
{
    static const timespec past = { 0, 0 }; /* CLOCK_MONOTONIC's origin */
    bool capped = false;
    int rc;

    if (rel <= rel.zero())
        return ::fifolock_mt_timed_acquire(lock, mode, &past);
    rc = ::fifolock_mt_try_acquire(lock, mode); /* granted at once: no clock to read */
    if (rc != EBUSY)
        return rc;
    do {
        timespec deadline = deadline_after(rel, capped);
        rc = ::fifolock_mt_timed_acquire(lock, mode, &deadline);
    } while (rc == ETIMEDOUT && capped);
    return rc;
}

/* `to - from` in seconds, as a double: it can't overflow whatever the two
   durations are (time_point::max() of hours, say), so it guards the exact
   arithmetic below, which it may only approximate. */
template <class Clock, class D1, class D2>
double seconds_between(const std::chrono::time_point<Clock, D1> &from,
                       const std::chrono::time_point<Clock, D2> &to)
{
    using seconds = std::chrono::duration<double>;
    return seconds(to.time_since_epoch()).count() - seconds(from.time_since_epoch()).count();
}

/* Whether `abs_time` has come on its clock at `now`. */
template <class Clock, class D1, class D2>
bool has_come(const std::chrono::time_point<Clock, D1> &now,
              const std::chrono::time_point<Clock, D2> &abs_time)
{
    double left = seconds_between(now, abs_time);
    if (left >= static_cast<double>(max_wait_seconds))
        return false;
    return left <= -static_cast<double>(max_wait_seconds) || abs_time <= now;
}

/* fifolock_mt_timed_acquire() until `abs_time` on any clock: converts the
   time left into a CLOCK_MONOTONIC deadline and asks again while the clock
   says time is left after that deadline passed. First, as acquire_for(),
   one try that reads no clock: the standard's "as if by try_lock()" for a
   time already past, and the same grant as the timed call otherwise. */
template <class Clock, class Duration>
int acquire_until(::fifolock_mt *lock, const ::fifolock_mode *mode,
                  const std::chrono::time_point<Clock, Duration> &abs_time)
{
    static const timespec past = { 0, 0 };
    int rc = ::fifolock_mt_try_acquire(lock, mode); /* granted at once: no clock to read */

    if (rc != EBUSY)
        return rc;
    for (;;) {
        auto now = Clock::now();

        if (has_come(now, abs_time)) {
            rc = ::fifolock_mt_timed_acquire(lock, mode, &past);
        } else {
            bool capped;
            timespec deadline =
                seconds_between(now, abs_time) >= static_cast<double>(max_wait_seconds)
                    ? monotonic_after(max_wait_seconds * 1000000000LL)
                    : deadline_after(abs_time - now, capped);
            rc = ::fifolock_mt_timed_acquire(lock, mode, &deadline);
        }
        if (rc != ETIMEDOUT || has_come(Clock::now(), abs_time))
            return rc;
    }
}

/* The timed calls' results as a bool; errors other than a timeout throw. */
inline bool granted_or_timed_out(int rc, const char *what)
{
    if (rc == 0)
        return true;
    if (rc != ETIMEDOUT)
        fail(rc, what);
    return false;
}

} // namespace detail

/**
 * A strictly FIFO mutex meeting the standard's TimedMutex requirements: a
 * fifolock_mt taken in mode fifolock_mutex. Threads get it in the order they
 * queue (see fifolock_mt.h, Order); the unlocking thread hands it to the
 * next one directly. Not recursive: a thread that locks it twice waits for
 * itself. Neither copyable nor movable.
 */
class mutex {
public:
    using native_handle_type = ::fifolock_mt *;

    /**
     * Unlocked. This function can't fail. constexpr, as std::mutex's: a
     * global one is constant-initialized (constinit in C++20), so it is
     * ready before any constructor of any translation unit runs.
     */
    constexpr mutex() noexcept : mt_ FIFOLOCK_MT_INITIALIZER {}

    /** The mutex must be unlocked and unwaited (asserted). */
    ~mutex()
    {
        [[maybe_unused]] int rc = ::fifolock_mt_destroy(&mt_);
        FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::mutex destroyed while locked or waited on");
    }

    mutex(const mutex &) = delete;
    mutex &operator=(const mutex &) = delete;

    /** Blocks until this thread holds the mutex. Can't fail for this mode. */
    void lock()
    {
        int rc = ::fifolock_mt_acquire(&mt_, &::fifolock_mutex);
        if (rc != 0)
            detail::fail(rc, "fifolock::mutex::lock");
    }

    /** Takes it if nobody holds or waits for it; never blocks. */
    bool try_lock() noexcept { return ::fifolock_mt_try_acquire(&mt_, &::fifolock_mutex) == 0; }

    /**
     * As lock(), but gives up after `rel` on the steady clock: false, and
     * the request left the queue without a trace. Throws only what the
     * duration's arithmetic throws.
     */
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period> &rel)
    {
        return detail::granted_or_timed_out(detail::acquire_for(&mt_, &::fifolock_mutex, rel),
                                            "fifolock::mutex::try_lock_for");
    }

    /**
     * As lock(), but gives up at `abs_time` of any clock (see Deadlines
     * above): false, no trace left. Throws only what the clock's now() and
     * the time arithmetic throw.
     */
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration> &abs_time)
    {
        return detail::granted_or_timed_out(
            detail::acquire_until(&mt_, &::fifolock_mutex, abs_time),
            "fifolock::mutex::try_lock_until");
    }

    /** Hands the mutex to the first waiter, if any. The caller must hold it (asserted). */
    void unlock() noexcept
    {
        [[maybe_unused]] int rc = ::fifolock_mt_release(&mt_, &::fifolock_mutex);
        FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::mutex::unlock of a mutex not locked");
    }

    /** The C lock, for fifolock_mt_waiting() and fifolock_mt_held(). */
    native_handle_type native_handle() noexcept { return &mt_; }

private:
    ::fifolock_mt mt_; /* FIFOLOCK_MT_INITIALIZER: what fifolock_mt_init() makes */
};

/**
 * A strictly FIFO reader-writer mutex meeting the standard's
 * SharedTimedMutex requirements: a fifolock_mt taken in mode fifolock_write
 * (lock) or fifolock_read (lock_shared). Readers and writers queue in one
 * line: a reader that comes after a waiting writer waits for it, readers
 * next to each other in the line are let in together. Neither copyable nor
 * movable.
 */
class shared_mutex {
public:
    using native_handle_type = ::fifolock_mt *;

    /**
     * Unlocked. This function can't fail. constexpr, as std::mutex's: a
     * global one is constant-initialized (constinit in C++20), so it is
     * ready before any constructor of any translation unit runs.
     */
    constexpr shared_mutex() noexcept : mt_ FIFOLOCK_MT_INITIALIZER {}

    /** It must be unlocked and unwaited (asserted). */
    ~shared_mutex()
    {
        [[maybe_unused]] int rc = ::fifolock_mt_destroy(&mt_);
        FIFOLOCK_HPP_ASSERT(rc == 0 &&
                            "fifolock::shared_mutex destroyed while locked or waited on");
    }

    shared_mutex(const shared_mutex &) = delete;
    shared_mutex &operator=(const shared_mutex &) = delete;

    /** Blocks until this thread holds it exclusively. Can't fail for this mode. */
    void lock()
    {
        int rc = ::fifolock_mt_acquire(&mt_, &::fifolock_write);
        if (rc != 0)
            detail::fail(rc, "fifolock::shared_mutex::lock");
    }

    /** Exclusive, if nobody holds or waits; never blocks. */
    bool try_lock() noexcept { return ::fifolock_mt_try_acquire(&mt_, &::fifolock_write) == 0; }

    /**
     * As lock(), but gives up after `rel` on the steady clock: false, and
     * the request left the queue without a trace. Throws only what the
     * duration's arithmetic throws.
     */
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period> &rel)
    {
        return detail::granted_or_timed_out(detail::acquire_for(&mt_, &::fifolock_write, rel),
                                            "fifolock::shared_mutex::try_lock_for");
    }

    /** As lock(), but gives up at `abs_time` of any clock (see Deadlines above): false. */
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration> &abs_time)
    {
        return detail::granted_or_timed_out(
            detail::acquire_until(&mt_, &::fifolock_write, abs_time),
            "fifolock::shared_mutex::try_lock_until");
    }

    /** Ends an exclusive hold. The caller must hold it so (asserted). */
    void unlock() noexcept
    {
        [[maybe_unused]] int rc = ::fifolock_mt_release(&mt_, &::fifolock_write);
        FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::shared_mutex::unlock of a mutex not locked");
    }

    /**
     * Blocks until this thread shares it. Throws std::system_error
     * (resource_unavailable_try_again) only if 2^32 - 1 shared holds exist.
     */
    void lock_shared()
    {
        int rc = ::fifolock_mt_acquire(&mt_, &::fifolock_read);
        if (rc != 0)
            detail::fail(rc, "fifolock::shared_mutex::lock_shared");
    }

    /** Shared, if no writer holds it and nobody waits; never blocks. */
    bool try_lock_shared() noexcept
    {
        return ::fifolock_mt_try_acquire(&mt_, &::fifolock_read) == 0;
    }

    /** As lock_shared(), but gives up after `rel` on the steady clock: false, no trace left. */
    template <class Rep, class Period>
    bool try_lock_shared_for(const std::chrono::duration<Rep, Period> &rel)
    {
        return detail::granted_or_timed_out(detail::acquire_for(&mt_, &::fifolock_read, rel),
                                            "fifolock::shared_mutex::try_lock_shared_for");
    }

    /** As lock_shared(), but gives up at `abs_time` of any clock: false, no trace left. */
    template <class Clock, class Duration>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration> &abs_time)
    {
        return detail::granted_or_timed_out(
            detail::acquire_until(&mt_, &::fifolock_read, abs_time),
            "fifolock::shared_mutex::try_lock_shared_until");
    }

    /** Ends a shared hold. The caller must hold one (asserted). */
    void unlock_shared() noexcept
    {
        [[maybe_unused]] int rc = ::fifolock_mt_release(&mt_, &::fifolock_read);
        FIFOLOCK_HPP_ASSERT(rc == 0 &&
                            "fifolock::shared_mutex::unlock_shared of a mutex not shared");
    }

    /** The C lock, for fifolock_mt_waiting() and fifolock_mt_held(). */
    native_handle_type native_handle() noexcept { return &mt_; }

private:
    ::fifolock_mt mt_; /* FIFOLOCK_MT_INITIALIZER: what fifolock_mt_init() makes */
};

/**
 * A fifolock_mt for any modes, owned: initialised by the constructor,
 * destroyed by the destructor. Each call is the C call of the same name;
 * errors throw std::system_error with its errno value (a timeout or EBUSY
 * is a false return instead). Usually taken through a fifolock::guard.
 * Neither copyable nor movable.
 */
class thread_lock {
public:
    using native_handle_type = ::fifolock_mt *;

    /**
     * Unheld, nobody waiting. This function can't fail. constexpr, as std::mutex's: a
     * global one is constant-initialized (constinit in C++20), so it is
     * ready before any constructor of any translation unit runs.
     */
    constexpr thread_lock() noexcept : mt_ FIFOLOCK_MT_INITIALIZER {}

    /** It must be unheld and unwaited (asserted). */
    ~thread_lock()
    {
        [[maybe_unused]] int rc = ::fifolock_mt_destroy(&mt_);
        FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::thread_lock destroyed while held or waited on");
    }

    thread_lock(const thread_lock &) = delete;
    thread_lock &operator=(const thread_lock &) = delete;

    /**
     * Blocks until one hold of `mode` is granted. Throws std::system_error:
     * EINVAL (a mode without a predicate), ENOMEM (no memory to count more
     * than FIFOLOCK_INLINE_MODES modes at once), EAGAIN (count overflow),
     * EDEADLK (a mode that can never be granted: refused by an empty lock).
     */
    void acquire(const fifolock_mode &mode)
    {
        int rc = ::fifolock_mt_acquire(&mt_, &mode);
        if (rc != 0)
            detail::fail(rc, "fifolock::thread_lock::acquire");
    }

    /* A mode is known by its address, which a temporary loses. */
    void acquire(const fifolock_mode &&mode) = delete;
    bool try_acquire(const fifolock_mode &&mode) = delete;

    /** One hold of `mode` if that can happen now: true; false (EBUSY); throws as acquire()
        (EDEADLK included: a mode that never fits is not merely busy). */
    bool try_acquire(const fifolock_mode &mode)
    {
        int rc = ::fifolock_mt_try_acquire(&mt_, &mode);
        if (rc == EBUSY)
            return false;
        if (rc != 0)
            detail::fail(rc, "fifolock::thread_lock::try_acquire");
        return true;
    }

    /** As acquire(), but gives up after `rel` on the steady clock: false. */
    template <class Rep, class Period>
    bool try_acquire_for(const fifolock_mode &mode, const std::chrono::duration<Rep, Period> &rel)
    {
        return detail::granted_or_timed_out(detail::acquire_for(&mt_, &mode, rel),
                                            "fifolock::thread_lock::try_acquire_for");
    }

    /** As acquire(), but gives up at `abs_time` of any clock: false. */
    template <class Clock, class Duration>
    bool try_acquire_until(const fifolock_mode &mode,
                           const std::chrono::time_point<Clock, Duration> &abs_time)
    {
        return detail::granted_or_timed_out(detail::acquire_until(&mt_, &mode, abs_time),
                                            "fifolock::thread_lock::try_acquire_until");
    }

    /** Drops one hold of `mode`. Throws std::system_error (EPERM) if none is held. */
    void release(const fifolock_mode &mode)
    {
        int rc = ::fifolock_mt_release(&mt_, &mode);
        if (rc != 0)
            detail::fail(rc, "fifolock::thread_lock::release");
    }

    /** Threads queued now (a snapshot). This function can't fail. */
    std::size_t waiting() noexcept { return ::fifolock_mt_waiting(&mt_); }

    /** Holders of exactly `mode` now (a snapshot). This function can't fail. */
    std::size_t held(const fifolock_mode &mode) noexcept { return ::fifolock_mt_held(&mt_, &mode); }

    /** The C lock, for the fifolock_mt_* calls and for fifolock::guard. */
    native_handle_type native_handle() noexcept { return &mt_; }

private:
    ::fifolock_mt mt_; /* FIFOLOCK_MT_INITIALIZER: what fifolock_mt_init() makes */
};

/**
 * One hold of one mode of a thread lock, released when the guard is
 * destroyed: std::unique_lock with a mode. Movable, not copyable. It names
 * its lock as a thread_lock or as a bare fifolock_mt (so also the
 * native_handle() of a mutex or shared_mutex), and its mode by reference:
 * both must outlive it. A guard is itself a TimedLockable (lock, try_lock,
 * try_lock_for, try_lock_until, unlock), so std::condition_variable_any can
 * wait on it.
 */
class guard {
public:
    /** No lock, nothing held. */
    guard() noexcept = default;

    /** Blocks until `mode` is held. Throws as thread_lock::acquire(). */
    guard(thread_lock &lock, const fifolock_mode &mode) : guard(*lock.native_handle(), mode) {}
    guard(fifolock_mt &lock, const fifolock_mode &mode) : lock_(&lock), mode_(&mode) { this->lock(); }

    /** Tries once; owns_lock() says whether it holds. */
    guard(thread_lock &lock, const fifolock_mode &mode, std::try_to_lock_t t)
        : guard(*lock.native_handle(), mode, t)
    {
    }
    guard(fifolock_mt &lock, const fifolock_mode &mode, std::try_to_lock_t)
        : lock_(&lock), mode_(&mode)
    {
        try_lock();
    }

    /** Not taken yet: lock() or try_lock() later. This function can't fail. */
    guard(thread_lock &lock, const fifolock_mode &mode, std::defer_lock_t) noexcept
        : lock_(lock.native_handle()), mode_(&mode)
    {
    }
    guard(fifolock_mt &lock, const fifolock_mode &mode, std::defer_lock_t) noexcept
        : lock_(&lock), mode_(&mode)
    {
    }

    /** Takes over a hold of `mode` that the caller has. This function can't fail. */
    guard(thread_lock &lock, const fifolock_mode &mode, std::adopt_lock_t) noexcept
        : lock_(lock.native_handle()), mode_(&mode), owns_(true)
    {
    }
    guard(fifolock_mt &lock, const fifolock_mode &mode, std::adopt_lock_t) noexcept
        : lock_(&lock), mode_(&mode), owns_(true)
    {
    }

    /** Waits at most `rel` on the steady clock; owns_lock() says whether it holds. */
    template <class Rep, class Period>
    guard(thread_lock &lock, const fifolock_mode &mode,
          const std::chrono::duration<Rep, Period> &rel)
        : lock_(lock.native_handle()), mode_(&mode)
    {
        try_lock_for(rel);
    }

    template <class Rep, class Period>
    guard(fifolock_mt &lock, const fifolock_mode &mode,
          const std::chrono::duration<Rep, Period> &rel)
        : lock_(&lock), mode_(&mode)
    {
        try_lock_for(rel);
    }

    /** Waits until `abs_time` of any clock; owns_lock() says whether it holds. */
    template <class Clock, class Duration>
    guard(thread_lock &lock, const fifolock_mode &mode,
          const std::chrono::time_point<Clock, Duration> &abs_time)
        : lock_(lock.native_handle()), mode_(&mode)
    {
        try_lock_until(abs_time);
    }
    template <class Clock, class Duration>
    guard(fifolock_mt &lock, const fifolock_mode &mode,
          const std::chrono::time_point<Clock, Duration> &abs_time)
        : lock_(&lock), mode_(&mode)
    {
        try_lock_until(abs_time);
    }

    /* A mode is known by its address, which a temporary loses. */
    template <class Lock, class... Args>
    guard(Lock &lock, const fifolock_mode &&mode, Args &&...args) = delete;

    guard(guard &&other) noexcept
        : lock_(std::exchange(other.lock_, nullptr)), mode_(std::exchange(other.mode_, nullptr)),
          owns_(std::exchange(other.owns_, false))
    {
    }

    guard &operator=(guard &&other) noexcept
    {
        if (this != &other) {
            if (owns_)
                (void)::fifolock_mt_release(lock_, mode_);
            lock_ = std::exchange(other.lock_, nullptr);
            mode_ = std::exchange(other.mode_, nullptr);
            owns_ = std::exchange(other.owns_, false);
        }
        return *this;
    }

    guard(const guard &) = delete;
    guard &operator=(const guard &) = delete;

    ~guard()
    {
        if (owns_)
            (void)::fifolock_mt_release(lock_, mode_);
    }

    /**
     * Blocks until the mode is held. Throws std::system_error:
     * operation_not_permitted without a lock, resource_deadlock_would_occur
     * if it already holds, or the C library's error as thread_lock::acquire().
     */
    void lock()
    {
        check_can_take("fifolock::guard::lock");
        int rc = ::fifolock_mt_acquire(lock_, mode_);
        if (rc != 0)
            detail::fail(rc, "fifolock::guard::lock");
        owns_ = true;
    }

    /** Takes the mode if that can happen now. Throws as lock(), but never for EBUSY. */
    bool try_lock()
    {
        check_can_take("fifolock::guard::try_lock");
        int rc = ::fifolock_mt_try_acquire(lock_, mode_);
        if (rc != 0 && rc != EBUSY)
            detail::fail(rc, "fifolock::guard::try_lock");
        owns_ = rc == 0;
        return owns_;
    }

    /** As lock(), but gives up after `rel` on the steady clock: false. */
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period> &rel)
    {
        check_can_take("fifolock::guard::try_lock_for");
        owns_ = detail::granted_or_timed_out(detail::acquire_for(lock_, mode_, rel),
                                             "fifolock::guard::try_lock_for");
        return owns_;
    }

    /** As lock(), but gives up at `abs_time` of any clock: false. */
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration> &abs_time)
    {
        check_can_take("fifolock::guard::try_lock_until");
        owns_ = detail::granted_or_timed_out(detail::acquire_until(lock_, mode_, abs_time),
                                             "fifolock::guard::try_lock_until");
        return owns_;
    }

    /** Drops the hold. Throws std::system_error (operation_not_permitted) if it holds none. */
    void unlock()
    {
        if (!owns_)
            detail::fail(EPERM, "fifolock::guard::unlock");
        owns_ = false;
        int rc = ::fifolock_mt_release(lock_, mode_);
        if (rc != 0)
            detail::fail(rc, "fifolock::guard::unlock");
    }

    /** Whether it holds its mode now; its lock (NULL for none) and mode. Can't fail. */
    bool owns_lock() const noexcept { return owns_; }
    explicit operator bool() const noexcept { return owns_; }
    fifolock_mt *lock_handle() const noexcept { return lock_; }
    const fifolock_mode *mode() const noexcept { return mode_; }

private:
    void check_can_take(const char *what) const
    {
        if (lock_ == nullptr || mode_ == nullptr)
            detail::fail(EPERM, what);
        if (owns_)
            detail::fail(EDEADLK, what);
    }

    fifolock_mt *lock_ = nullptr;
    const fifolock_mode *mode_ = nullptr;
    bool owns_ = false;
};

/**
 * One hold of one mode of an event-loop lock (fifolock.h), released with
 * fifolock_release() when it is destroyed (grant callbacks of the waiters
 * it lets in run inside that call, as in C). Movable, not copyable. Got from
 * event_lock::try_acquire(), request::take(), or adopted.
 */
class hold {
public:
    hold() noexcept = default;

    /** Takes over a hold of `mode` on `lock` that the caller has. This function can't fail. */
    hold(::fifolock_lock &lock, const fifolock_mode &mode, std::adopt_lock_t) noexcept
        : lock_(&lock), mode_(&mode)
    {
    }

    hold(hold &&other) noexcept
        : lock_(std::exchange(other.lock_, nullptr)), mode_(std::exchange(other.mode_, nullptr))
    {
    }

    hold &operator=(hold &&other) noexcept
    {
        if (this != &other) {
            release();
            lock_ = std::exchange(other.lock_, nullptr);
            mode_ = std::exchange(other.mode_, nullptr);
        }
        return *this;
    }

    hold(const hold &) = delete;
    hold &operator=(const hold &) = delete;

    ~hold() { release(); }

    /** Releases the hold now, if it has one. This function can't fail. */
    void release() noexcept
    {
        if (lock_ != nullptr) {
            ::fifolock_lock *lock = std::exchange(lock_, nullptr);
            [[maybe_unused]] int rc = ::fifolock_release(lock, std::exchange(mode_, nullptr));
            FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::hold released behind its back");
        }
    }

    /** Whether it has a hold; its lock (NULL for none) and mode. Can't fail. */
    bool owns() const noexcept { return lock_ != nullptr; }
    explicit operator bool() const noexcept { return owns(); }
    ::fifolock_lock *lock_handle() const noexcept { return lock_; }
    const fifolock_mode *mode() const noexcept { return mode_; }

private:
    ::fifolock_lock *lock_ = nullptr;
    const fifolock_mode *mode_ = nullptr;
};

/**
 * The event-loop lock (fifolock.h), owned: initialised by the constructor,
 * destroyed by the destructor. Single-threaded, as in C. Neither copyable
 * nor movable. Queued requests are fifolock::request objects.
 */
class event_lock {
public:
    using native_handle_type = ::fifolock_lock *;

    /** Unheld, nobody waiting. This function can't fail. */
    event_lock() noexcept { ::fifolock_init(&lock_); }

    /** It must be unheld and unwaited (asserted). */
    ~event_lock()
    {
        [[maybe_unused]] int rc = ::fifolock_destroy(&lock_);
        FIFOLOCK_HPP_ASSERT(rc == 0 && "fifolock::event_lock destroyed while held or waited on");
    }

    event_lock(const event_lock &) = delete;
    event_lock &operator=(const event_lock &) = delete;

    /**
     * One hold of `mode` if nobody waits and `mode` fits now; an empty hold
     * (EBUSY) otherwise. Never queues, never runs a callback. Throws
     * std::system_error for EINVAL, ENOMEM, EAGAIN, EDEADLK as
     * fifolock_try_acquire().
     */
    hold try_acquire(const fifolock_mode &mode)
    {
        int rc = ::fifolock_try_acquire(&lock_, &mode);
        if (rc == EBUSY)
            return hold();
        if (rc != 0)
            detail::fail(rc, "fifolock::event_lock::try_acquire");
        return hold(lock_, mode, std::adopt_lock);
    }

    /* A mode is known by its address, which a temporary loses. */
    hold try_acquire(const fifolock_mode &&mode) = delete;

    /** Queued requests. This function can't fail. */
    std::size_t waiting() const noexcept { return ::fifolock_waiting(&lock_); }

    /** Holders of exactly `mode`. This function can't fail. */
    std::size_t held(const fifolock_mode &mode) const noexcept
    {
        return ::fifolock_held(::fifolock_holds_of(&lock_), &mode);
    }

    /** The C lock (fifolock in C, fifolock_lock in C++), for the fifolock_* calls. */
    native_handle_type native_handle() noexcept { return &lock_; }

private:
    ::fifolock_lock lock_{}; /* set by fifolock_init() */
};

/**
 * A request for an event-loop lock: the C waiter, with RAII. acquire()
 * takes the mode at once or queues; once granted the request holds it
 * until release(), take() (which moves the hold out) or its destruction.
 * Destroyed while queued it cancels (waiters it held back are granted inside
 * that call); destroyed holding it releases. Neither copyable nor movable
 * (the lock links to it while it is queued). A request may be used again
 * once it is neither queued nor holding.
 */
class request {
public:
    /** Idle. This function can't fail. */
    request() noexcept = default;

    ~request()
    {
        if (queued_)
            (void)::fifolock_cancel(lock_, &waiter_);
        else if (owns_)
            (void)::fifolock_release(lock_, mode_);
    }

    request(const request &) = delete;
    request &operator=(const request &) = delete;

    /** Called once when a queued request is granted, with the request and `arg`. */
    using callback = void(request &req, void *arg);

    /**
     * Asks for `mode` on `lock`. Returns true if it holds the mode now
     * (`on_granted` is not called), false if it queued: then
     * `on_granted(*this, arg)` runs exactly once, inside the release or
     * cancel call that made room, after the request already holds the mode;
     * it may destroy the request or call anything on the lock. It must not
     * throw (it runs inside C code: std::terminate). Throws
     * std::system_error, nothing changed: EINVAL if this request is queued
     * or holds, or for a mode without a predicate; ENOMEM, EAGAIN as
     * fifolock_acquire().
     */
    bool acquire(event_lock &lock, const fifolock_mode &mode, callback *on_granted, void *arg)
    {
        return start(*lock.native_handle(), mode, on_granted, arg);
    }

    /**
     * The same with a callable object `on_granted(*this)`, which must
     * outlive the wait (it is kept by address; a temporary does not bind).
     */
    template <class F>
    bool acquire(event_lock &lock, const fifolock_mode &mode, F &on_granted)
    {
        static_assert(std::is_class<F>::value,
                      "a callable object; pass a function as (function, arg)");
        return start(*lock.native_handle(), mode, &call<F>, static_cast<void *>(&on_granted));
    }

    /* A mode is known by its address, which a temporary loses. */
    template <class... Args>
    bool acquire(event_lock &lock, const fifolock_mode &&mode, Args &&...args) = delete;

    /**
     * Withdraws the request if it is queued: true (its callback will never
     * run; waiters it held back are granted inside this call). False if it
     * was not queued (granted already, or idle). This function can't fail.
     */
    bool cancel() noexcept
    {
        if (!queued_)
            return false;
        queued_ = false;
        [[maybe_unused]] int rc = ::fifolock_cancel(lock_, &waiter_);
        FIFOLOCK_HPP_ASSERT(rc == 0);
        return true;
    }

    /** Moves the hold out of a granted request (an empty hold otherwise). Can't fail. */
    hold take() noexcept
    {
        if (!owns_)
            return hold();
        owns_ = false;
        return hold(*lock_, *mode_, std::adopt_lock);
    }

    /** Releases the hold of a granted request, if it has one. This function can't fail. */
    void release() noexcept { (void)take(); }

    /** Whether it waits in the queue; whether it holds its mode; that mode. Can't fail. */
    bool queued() const noexcept { return queued_; }
    bool owns() const noexcept { return owns_; }
    const fifolock_mode *mode() const noexcept { return mode_; }

    /** The C waiter (its `data` field is the caller's). */
    fifolock_waiter *native_handle() noexcept { return &waiter_; }

private:
    bool start(::fifolock_lock &lock, const fifolock_mode &mode, callback *on_granted, void *arg)
    {
        if (queued_ || owns_)
            detail::fail(EINVAL, "fifolock::request::acquire");
        on_granted_ = on_granted;
        arg_ = arg;
        int rc = ::fifolock_acquire(&lock, &waiter_, &mode, &granted, this);
        if (rc != 0 && rc != FIFOLOCK_WAITING)
            detail::fail(rc, "fifolock::request::acquire");
        lock_ = &lock;
        mode_ = &mode;
        owns_ = rc == 0;
        queued_ = rc == FIFOLOCK_WAITING;
        return owns_;
    }

    template <class F>
    static void call(request &req, void *f)
    {
        (*static_cast<F *>(f))(req);
    }

    /* The C callback. Noexcept: an exception can't cross the C library's
       frames. The request's state is set before the user's callback runs,
       and not touched after it (the callback may destroy the request). */
    static void granted(::fifolock_waiter *, void *self) noexcept
    {
        request *req = static_cast<request *>(self);
        req->queued_ = false;
        req->owns_ = true;
        req->on_granted_(*req, req->arg_);
    }

    ::fifolock_waiter waiter_{}; /* FIFOLOCK_WAITER_INIT */
    ::fifolock_lock *lock_ = nullptr;
    const fifolock_mode *mode_ = nullptr;
    callback *on_granted_ = nullptr;
    void *arg_ = nullptr;
    bool queued_ = false;
    bool owns_ = false;
};

} // namespace fifolock

#endif /* FIFOLOCK_HPP */
