/*
 * fifolock.hpp with threads: fifolock::mutex and fifolock::shared_mutex
 * through the standard's lock types (unique_lock, shared_lock, scoped_lock,
 * std::lock, condition_variable_any), FIFO order of waiters, exclusion
 * under contention, deadlines on steady, system, offset and hand-set clocks,
 * fifolock::guard on semaphores, intention modes and its misuse. Threads
 * never call CHECK (the harness is single-threaded): they record, main
 * checks.
 */
#include <fifolock.hpp>

#include "check.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::steady_clock;

/* ---- the types, at compile time ------------------------------------------- */

template <class T>
constexpr bool pinned = !std::is_copy_constructible<T>::value && !std::is_move_constructible<T>::value &&
                        !std::is_copy_assignable<T>::value && !std::is_move_assignable<T>::value;
static_assert(pinned<fifolock::mutex>, "a mutex is neither copyable nor movable");
static_assert(pinned<fifolock::shared_mutex>, "a shared_mutex is neither copyable nor movable");
static_assert(pinned<fifolock::thread_lock>, "a thread_lock is neither copyable nor movable");
static_assert(pinned<fifolock::event_lock>, "an event_lock is neither copyable nor movable");
static_assert(pinned<fifolock::request>, "a request (a queued waiter) does not move");

template <class T>
constexpr bool move_only = !std::is_copy_constructible<T>::value && !std::is_copy_assignable<T>::value &&
                           std::is_nothrow_move_constructible<T>::value &&
                           std::is_nothrow_move_assignable<T>::value;
static_assert(move_only<fifolock::guard>, "a guard moves (noexcept) and does not copy");
static_assert(move_only<fifolock::hold>, "a hold moves (noexcept) and does not copy");

static_assert(std::is_nothrow_default_constructible<fifolock::mutex>::value, "mutex() noexcept");
static_assert(std::is_nothrow_default_constructible<fifolock::shared_mutex>::value, "");
static_assert(std::is_nothrow_destructible<fifolock::mutex>::value, "");
static_assert(std::is_nothrow_destructible<fifolock::shared_mutex>::value, "");
static_assert(noexcept(std::declval<fifolock::mutex &>().try_lock()), "try_lock: Throws: Nothing");
static_assert(noexcept(std::declval<fifolock::mutex &>().unlock()), "unlock: Throws: Nothing");
static_assert(!noexcept(std::declval<fifolock::mutex &>().lock()), "lock may throw system_error");
static_assert(!noexcept(std::declval<fifolock::mutex &>().try_lock_for(1ms)),
              "try_lock_for may throw timeout-related exceptions");
static_assert(noexcept(std::declval<fifolock::shared_mutex &>().try_lock()), "");
static_assert(noexcept(std::declval<fifolock::shared_mutex &>().unlock()), "");
static_assert(noexcept(std::declval<fifolock::shared_mutex &>().try_lock_shared()), "");
static_assert(noexcept(std::declval<fifolock::shared_mutex &>().unlock_shared()), "");
static_assert(!noexcept(std::declval<fifolock::shared_mutex &>().lock_shared()), "");
static_assert(std::is_same<fifolock::mutex::native_handle_type, fifolock_mt *>::value, "");

/* A mode is known by its address: a temporary one does not bind where it is kept or released. */
static_assert(std::is_constructible<fifolock::guard, fifolock::thread_lock &, fifolock_mode &>::value, "");
static_assert(!std::is_constructible<fifolock::guard, fifolock::thread_lock &, fifolock_mode>::value, "");
static_assert(!std::is_constructible<fifolock::guard, fifolock_mt &, fifolock_mode, std::try_to_lock_t>::value,
              "");
static_assert(std::is_constructible<fifolock::guard, fifolock_mt &, const fifolock_mode &,
                                    std::chrono::milliseconds>::value,
              "");
static_assert(!std::is_constructible<fifolock::guard, fifolock_mt &, fifolock_mode,
                                     std::chrono::milliseconds>::value,
              "");
template <class L, class M, class = void>
struct can_acquire : std::false_type {};
template <class L, class M>
struct can_acquire<L, M, decltype(std::declval<L &>().acquire(std::declval<M>()))> : std::true_type {};
static_assert(can_acquire<fifolock::thread_lock, const fifolock_mode &>::value, "");
static_assert(!can_acquire<fifolock::thread_lock, fifolock_mode>::value, "");

/* ---- helpers --------------------------------------------------------------- */

/* Waits (yielding, then sleeping) until `done()`; a hang fails by the CTest timeout. */
template <class F>
static void wait_until(F done)
{
    for (unsigned i = 0; !done(); i++) {
        if (i < 100)
            std::this_thread::yield();
        else
            std::this_thread::sleep_for(100us);
    }
}

static void wait_queued(fifolock_mt *lock, std::size_t n)
{
    wait_until([&] { return fifolock_mt_waiting(lock) >= n; });
}

/* The errno value of the std::system_error that `f` throws, 0 if none, -1 for another exception. */
template <class F>
static int error_of(F f)
{
    try {
        f();
    } catch (const std::system_error &e) {
        return e.code().category() == std::generic_category() ? e.code().value() : -2;
    } catch (...) {
        return -1;
    }
    return 0;
}

static long long ms_since(steady_clock::time_point t0)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
}

/* A steady clock whose epoch is not CLOCK_MONOTONIC's: 10000 hours later. */
struct offset_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<offset_clock>;
    static constexpr bool is_steady = true;
    static time_point now() noexcept
    {
        return time_point(steady_clock::now().time_since_epoch() + std::chrono::hours(10000));
    }
};

/* A clock that moves only when the test sets it (so it is not steady). */
struct manual_clock {
    using duration = std::chrono::milliseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<manual_clock>;
    static constexpr bool is_steady = false;
    static inline std::atomic<long long> ms{ 0 };
    static time_point now() noexcept { return time_point(duration(ms.load())); }
};

/* ---- FIFO order ------------------------------------------------------------ */

static void mutex_grants_waiters_in_the_order_they_queued(void)
{
    fifolock::mutex m;
    std::vector<int> order;
    std::vector<std::thread> threads;
    const int n = 5;

    m.lock();
    for (int i = 0; i < n; i++) {
        threads.emplace_back([&, i] {
            std::unique_lock<fifolock::mutex> l(m);
            order.push_back(i); /* under the lock */
        });
        wait_queued(m.native_handle(), static_cast<std::size_t>(i + 1));
    }
    CHECK_FALSE(m.try_lock()); /* held, and waited for */
    m.unlock();
    for (auto &t : threads)
        t.join();
    CHECK_EQ(order.size(), n);
    for (int i = 0; i < n && i < static_cast<int>(order.size()); i++)
        CHECK_EQ(order[static_cast<std::size_t>(i)], i);
    CHECK_TRUE(m.try_lock());
    m.unlock();
}

/* Held shared; queued: writer 1, readers 2 and 3, writer 4. A reader queued
   behind a writer waits though it could share now; 2 and 3 then share. */
static void shared_mutex_queues_readers_behind_a_waiting_writer(void)
{
    fifolock::shared_mutex m;
    std::mutex log_mutex;
    std::vector<int> order;
    std::atomic<int> readers_in{ 0 };
    std::atomic<int> max_readers_in{ 0 };
    std::vector<std::thread> threads;
    auto log = [&](int id) {
        std::lock_guard<std::mutex> g(log_mutex);
        order.push_back(id);
    };
    auto writer = [&](int id) {
        std::unique_lock<fifolock::shared_mutex> l(m);
        log(id);
        std::this_thread::sleep_for(5ms);
    };
    auto reader = [&](int id) {
        std::shared_lock<fifolock::shared_mutex> l(m);
        log(id);
        int in = ++readers_in;
        int seen = max_readers_in.load();
        while (in > seen && !max_readers_in.compare_exchange_weak(seen, in)) {
        }
        /* wait (up to 10 s) for the other reader: they are let in together */
        auto t0 = steady_clock::now();
        while (max_readers_in.load() < 2 && steady_clock::now() - t0 < 10s)
            std::this_thread::sleep_for(100us);
        --readers_in;
    };

    m.lock_shared();
    threads.emplace_back(writer, 1);
    wait_queued(m.native_handle(), 1);
    CHECK_FALSE(m.try_lock_shared()); /* no barging past the waiting writer */
    threads.emplace_back(reader, 2);
    wait_queued(m.native_handle(), 2);
    threads.emplace_back(reader, 3);
    wait_queued(m.native_handle(), 3);
    threads.emplace_back(writer, 4);
    wait_queued(m.native_handle(), 4);
    CHECK_EQ(fifolock_mt_held(m.native_handle(), &fifolock_read), 1);
    m.unlock_shared();
    for (auto &t : threads)
        t.join();
    CHECK_EQ(order.size(), 4);
    if (order.size() == 4) {
        CHECK_EQ(order[0], 1);
        CHECK_TRUE((order[1] == 2 && order[2] == 3) || (order[1] == 3 && order[2] == 2));
        CHECK_EQ(order[3], 4);
    }
    CHECK_EQ(max_readers_in.load(), 2);
}

static void shared_mutex_readers_hold_it_together(void)
{
    fifolock::shared_mutex m;
    std::atomic<int> both_seen{ 0 };
    auto reader = [&] {
        std::shared_lock<fifolock::shared_mutex> l(m);
        auto t0 = steady_clock::now();
        while (fifolock_mt_held(m.native_handle(), &fifolock_read) < 2 &&
               steady_clock::now() - t0 < 10s)
            std::this_thread::sleep_for(100us);
        if (fifolock_mt_held(m.native_handle(), &fifolock_read) == 2)
            ++both_seen;
        /* leave only once both saw each other */
        while (both_seen.load() < 2 && steady_clock::now() - t0 < 10s)
            std::this_thread::sleep_for(100us);
    };
    std::thread a(reader), b(reader);
    a.join();
    b.join();
    CHECK_EQ(both_seen.load(), 2);
    CHECK_TRUE(m.try_lock_shared_for(0ms)); /* free again */
    m.unlock_shared();
    CHECK_TRUE(m.try_lock());
    CHECK_FALSE(m.try_lock_shared());
    m.unlock();
}

/* ---- exclusion under contention ------------------------------------------- */

static void mutex_excludes_under_contention(void)
{
    fifolock::mutex m;
    long long counter = 0; /* plain: a broken lock loses increments (and TSan sees the race) */
    std::atomic<int> inside{ 0 };
    std::atomic<int> overlaps{ 0 };
    const int threads_n = 4, rounds = 2000;
    std::vector<std::thread> threads;

    for (int t = 0; t < threads_n; t++)
        threads.emplace_back([&] {
            for (int i = 0; i < rounds; i++) {
                std::lock_guard<fifolock::mutex> g(m);
                if (inside.fetch_add(1) != 0)
                    ++overlaps;
                counter++;
                inside.fetch_sub(1);
            }
        });
    for (auto &t : threads)
        t.join();
    CHECK_EQ(counter, threads_n * rounds);
    CHECK_EQ(overlaps.load(), 0);
    CHECK_EQ(fifolock_mt_waiting(m.native_handle()), 0);
}

static void shared_mutex_excludes_writers_from_readers_under_contention(void)
{
    fifolock::shared_mutex m;
    long long counter = 0;
    std::atomic<int> writers_in{ 0 }, readers_in{ 0 };
    std::atomic<int> violations{ 0 };
    const int rounds = 1000;
    std::vector<std::thread> threads;

    for (int t = 0; t < 2; t++)
        threads.emplace_back([&] {
            for (int i = 0; i < rounds; i++) {
                std::unique_lock<fifolock::shared_mutex> l(m);
                if (writers_in.fetch_add(1) != 0 || readers_in.load() != 0)
                    ++violations;
                counter++;
                writers_in.fetch_sub(1);
            }
        });
    for (int t = 0; t < 2; t++)
        threads.emplace_back([&] {
            long long last = 0;
            for (int i = 0; i < rounds; i++) {
                std::shared_lock<fifolock::shared_mutex> l(m);
                readers_in.fetch_add(1);
                if (writers_in.load() != 0 || counter < last)
                    ++violations;
                last = counter;
                readers_in.fetch_sub(1);
            }
        });
    for (auto &t : threads)
        t.join();
    CHECK_EQ(counter, 2 * rounds);
    CHECK_EQ(violations.load(), 0);
}

/* ---- deadlines -------------------------------------------------------------- */

/* Runs `attempt` in another thread while this one holds `m`; returns what it returned. */
template <class M, class F>
static bool attempt_while_held(M &m, F attempt)
{
    bool got = true;

    m.lock();
    std::thread t([&] {
        got = attempt();
        if (got)
            m.unlock(); /* holds belong to the lock: any thread may unlock (the test's convenience) */
    });
    t.join();
    m.unlock();
    return got;
}

/* Runs `attempt` in another thread while this one holds `m`, lets go once
   it waits (or returned), and returns what it returned. */
template <class F>
static bool granted_when_let_go(fifolock::mutex &m, F attempt)
{
    std::atomic<bool> got{ false }, done{ false };

    m.lock();
    std::thread t([&] {
        got = attempt();
        done = true;
        if (got)
            m.unlock();
    });
    wait_until([&] { return done.load() || fifolock_mt_waiting(m.native_handle()) == 1; });
    m.unlock();
    t.join();
    return got;
}

static void try_lock_for_gives_up_after_the_time_and_leaves_no_trace(void)
{
    fifolock::mutex m;
    long long waited = -1;

    bool got = attempt_while_held(m, [&] {
        auto t0 = steady_clock::now();
        bool r = m.try_lock_for(40ms);
        waited = ms_since(t0);
        return r;
    });
    CHECK_FALSE(got);
    CHECK_LE(40, waited);
    CHECK_EQ(fifolock_mt_waiting(m.native_handle()), 0);
    CHECK_EQ(fifolock_mt_held(m.native_handle(), &fifolock_mutex), 0);
    CHECK_TRUE(m.try_lock_for(40ms)); /* free: at once */
    m.unlock();
}

static void try_lock_until_works_with_steady_system_and_offset_clocks(void)
{
    fifolock::mutex m;
    long long steady_waited = -1, system_waited = -1, offset_waited = -1;

    CHECK_FALSE(attempt_while_held(m, [&] {
        auto t0 = steady_clock::now();
        bool r = m.try_lock_until(t0 + 30ms);
        steady_waited = ms_since(t0);
        return r;
    }));
    CHECK_FALSE(attempt_while_held(m, [&] {
        auto t0 = std::chrono::system_clock::now();
        bool r = m.try_lock_until(t0 + 30ms);
        system_waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now() - t0)
                            .count();
        return r;
    }));
    /* an epoch 10000 hours from CLOCK_MONOTONIC's: read as monotonic, this would wait that long */
    CHECK_FALSE(attempt_while_held(m, [&] {
        auto t0 = steady_clock::now();
        bool r = m.try_lock_until(offset_clock::now() + 30ms);
        offset_waited = ms_since(t0);
        return r;
    }));
    CHECK_LE(30, steady_waited);
    CHECK_LE(30, system_waited);
    CHECK_LE(30, offset_waited);
    CHECK_LT(offset_waited, 10000);
    CHECK_TRUE(m.try_lock_until(offset_clock::now() + 30ms));
    m.unlock();
    CHECK_TRUE(m.try_lock_until(std::chrono::system_clock::now() + 30ms));
    m.unlock();
}

static void shared_timed_calls_time_out_against_a_writer_and_share_with_readers(void)
{
    fifolock::shared_mutex m;

    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_shared_for(20ms); }));
    CHECK_FALSE(attempt_while_held(m, [&] {
        return m.try_lock_shared_until(std::chrono::system_clock::now() + 20ms);
    }));
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_for(20ms); }));
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_until(steady_clock::now() + 20ms); }));
    CHECK_EQ(fifolock_mt_waiting(m.native_handle()), 0);
    m.lock_shared();
    bool shared = false, exclusive = true;
    std::thread t([&] {
        shared = m.try_lock_shared_for(20ms);
        if (shared)
            m.unlock_shared();
        exclusive = m.try_lock_until(steady_clock::now() + 20ms);
    });
    t.join();
    CHECK_TRUE(shared);
    CHECK_FALSE(exclusive);
    m.unlock_shared();
}

/* Past times, zero, negative and the largest durations and time points. */
static void extreme_times_try_once_or_wait_without_overflow(void)
{
    fifolock::mutex m;

    CHECK_TRUE(m.try_lock_for(0s));
    m.unlock();
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_for(-5s); }));
    CHECK_TRUE(m.try_lock_until(steady_clock::time_point::min()));
    m.unlock();
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_until(steady_clock::time_point::min()); }));
    CHECK_FALSE(attempt_while_held(m, [&] {
        return m.try_lock_until(std::chrono::system_clock::now() - 1h);
    }));
    CHECK_TRUE(m.try_lock_for(std::chrono::hours::max()));
    m.unlock();
    CHECK_TRUE(m.try_lock_for(steady_clock::duration::max()));
    m.unlock();
    CHECK_TRUE(m.try_lock_until(steady_clock::time_point::max()));
    m.unlock();
    /* coarse durations: converted to the clock's nanoseconds, max() and min() overflow */
    using hours_point = std::chrono::time_point<steady_clock, std::chrono::hours>;
    using minutes_point = std::chrono::time_point<std::chrono::system_clock, std::chrono::minutes>;
    CHECK_TRUE(m.try_lock_until(hours_point::max()));
    m.unlock();
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_until(minutes_point::min()); }));
    CHECK_FALSE(attempt_while_held(m, [&] { return m.try_lock_until(hours_point::min()); }));
    CHECK_TRUE(m.try_lock_for(std::chrono::duration<double>(1e300)));
    m.unlock();
    CHECK_TRUE(m.try_lock_for(1.5ms)); /* a floating duration */
    m.unlock();

    /* held, then let go: the longest waits are granted, not overflowed into the past */
    CHECK_TRUE(granted_when_let_go(m, [&] { return m.try_lock_for(std::chrono::hours::max()); }));
    CHECK_TRUE(granted_when_let_go(
        m, [&] { return m.try_lock_until(std::chrono::system_clock::time_point::max()); }));
    CHECK_TRUE(granted_when_let_go(m, [&] { return m.try_lock_until(hours_point::max()); }));
    CHECK_TRUE(m.try_lock());
    m.unlock();
}

/* A clock that is not steady: time left on it is what counts, however long
   the first converted deadline was. */
static void try_lock_until_follows_a_clock_that_is_not_steady(void)
{
    fifolock::mutex m;
    std::atomic<int> done{ 0 };
    bool got = false;

    manual_clock::ms = 0;
    m.lock();
    std::thread t([&] {
        got = m.try_lock_until(manual_clock::time_point(30ms));
        done = 1;
    });
    std::this_thread::sleep_for(150ms); /* several converted deadlines: the clock did not move */
    CHECK_EQ(done.load(), 0);
    m.unlock(); /* granted to the waiter, on its current ask */
    t.join();
    CHECK_TRUE(got);
    m.unlock();

    done = 0;
    got = true;
    manual_clock::ms = 0;
    m.lock();
    std::thread u([&] {
        got = m.try_lock_until(manual_clock::time_point(30ms));
        done = 1;
    });
    std::this_thread::sleep_for(100ms);
    CHECK_EQ(done.load(), 0);
    manual_clock::ms = 1000; /* jumps past the time point: gives up after the current ask */
    u.join();
    CHECK_FALSE(got);
    CHECK_EQ(fifolock_mt_waiting(m.native_handle()), 0);
    m.unlock();
}

/* ---- standard lock types ---------------------------------------------------- */

static void condition_variable_any_works_with_unique_lock_of_a_fifolock_mutex(void)
{
    fifolock::mutex m;
    std::condition_variable_any not_empty;
    std::deque<int> queue;
    long long sum = 0;
    const int producers = 2, consumers = 2, items = 500;
    std::vector<std::thread> threads;
    int stop_seen = 0;

    for (int c = 0; c < consumers; c++)
        threads.emplace_back([&] {
            for (;;) {
                std::unique_lock<fifolock::mutex> l(m);
                not_empty.wait(l, [&] { return !queue.empty(); });
                int v = queue.front();
                queue.pop_front();
                if (v < 0) {
                    stop_seen++;
                    return;
                }
                sum += v;
            }
        });
    for (int p = 0; p < producers; p++)
        threads.emplace_back([&] {
            for (int i = 1; i <= items; i++) {
                std::unique_lock<fifolock::mutex> l(m);
                queue.push_back(i);
                l.unlock();
                not_empty.notify_one();
            }
        });
    for (int p = 0; p < producers; p++)
        threads[static_cast<std::size_t>(consumers + p)].join();
    {
        std::lock_guard<fifolock::mutex> l(m);
        for (int c = 0; c < consumers; c++)
            queue.push_back(-1);
    }
    not_empty.notify_all();
    for (int c = 0; c < consumers; c++)
        threads[static_cast<std::size_t>(c)].join();
    CHECK_EQ(sum, producers * (items * (items + 1LL) / 2));
    CHECK_EQ(stop_seen, consumers);

    /* a wait that times out returns with the lock held again */
    std::unique_lock<fifolock::mutex> l(m);
    CHECK_TRUE(not_empty.wait_for(l, 5ms) == std::cv_status::timeout);
    CHECK_TRUE(l.owns_lock());
    CHECK_EQ(fifolock_mt_held(m.native_handle(), &fifolock_mutex), 1);
}

/* Two threads take the same two mutexes in opposite orders, many times. */
static void scoped_lock_of_two_fifolock_mutexes_never_deadlocks(void)
{
    fifolock::mutex a, b;
    long long both = 0;
    const int rounds = 1000;

    std::thread t1([&] {
        for (int i = 0; i < rounds; i++) {
            std::scoped_lock l(a, b);
            both++;
        }
    });
    std::thread t2([&] {
        for (int i = 0; i < rounds; i++) {
            std::scoped_lock l(b, a);
            both++;
        }
    });
    std::thread t3([&] {
        for (int i = 0; i < rounds; i++) {
            std::unique_lock<fifolock::mutex> lb(b, std::defer_lock), la(a, std::defer_lock);
            std::lock(lb, la);
            both++;
        }
    });
    t1.join();
    t2.join();
    t3.join();
    CHECK_EQ(both, 3 * rounds);
    CHECK_TRUE(a.try_lock() && b.try_lock());
    a.unlock();
    b.unlock();
}

static void unique_lock_timed_constructors_work_with_fifolock_mutex(void)
{
    fifolock::mutex m;
    fifolock::shared_mutex s;

    {
        std::unique_lock<fifolock::mutex> l(m, 10ms);
        CHECK_TRUE(l.owns_lock());
        std::unique_lock<fifolock::mutex> l2(m, std::try_to_lock);
        CHECK_FALSE(l2.owns_lock());
    }
    {
        std::shared_lock<fifolock::shared_mutex> r1(s, 10ms), r2(s, steady_clock::now() + 10ms);
        CHECK_TRUE(r1.owns_lock() && r2.owns_lock());
        CHECK_EQ(fifolock_mt_held(s.native_handle(), &fifolock_read), 2);
        std::unique_lock<fifolock::shared_mutex> w(s, std::try_to_lock);
        CHECK_FALSE(w.owns_lock());
        std::condition_variable_any cv; /* waits on a shared_lock too: unlock_shared, lock_shared */
        CHECK_TRUE(cv.wait_for(r1, 1ms) == std::cv_status::timeout);
        CHECK_TRUE(r1.owns_lock());
        CHECK_EQ(fifolock_mt_held(s.native_handle(), &fifolock_read), 2);
    }
    CHECK_EQ(fifolock_mt_held(s.native_handle(), &fifolock_read), 0);
}

/* ---- the guard on any mode --------------------------------------------------- */

static void guard_on_a_semaphore_admits_its_size_then_queues(void)
{
    fifolock::thread_lock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(2);
    std::vector<fifolock::guard> held;
    std::atomic<int> third_in{ 0 };

    held.emplace_back(lock, sem);
    held.emplace_back(lock, sem, std::try_to_lock);
    CHECK_TRUE(held[1].owns_lock());
    fifolock::guard no(lock, sem, std::try_to_lock);
    CHECK_FALSE(no.owns_lock());
    CHECK_FALSE(no);
    CHECK_EQ(lock.held(sem), 2);

    std::thread t([&] {
        fifolock::guard g(lock, sem);
        third_in = 1;
        wait_until([&] { return third_in.load() == 2; });
    });
    wait_queued(lock.native_handle(), 1);
    CHECK_EQ(third_in.load(), 0);
    fifolock::guard timed(lock, sem, 10ms); /* queues behind the third: times out */
    CHECK_FALSE(timed.owns_lock());
    held.pop_back(); /* the destructor releases: the third gets in */
    wait_until([&] { return third_in.load() == 1; });
    CHECK_EQ(lock.held(sem), 2);
    third_in = 2;
    t.join();
    CHECK_EQ(lock.held(sem), 1);

    fifolock::guard moved = std::move(held[0]);
    CHECK_FALSE(held[0].owns_lock());
    CHECK_TRUE(moved.owns_lock());
    held.clear(); /* the moved-from guard releases nothing */
    CHECK_EQ(lock.held(sem), 1);
    moved = fifolock::guard(); /* move-assigning releases the old hold */
    CHECK_EQ(lock.held(sem), 0);
}

/* IS and IX share; S must wait for IX; an IX behind the waiting S waits for
   S too, though it could share with the holders when it came (FIFO). */
static void guard_with_intention_modes_keeps_the_matrix_and_the_order(void)
{
    fifolock::thread_lock lock;
    std::vector<int> order;
    std::mutex log_mutex;

    fifolock::guard is(lock, fifolock_is);
    fifolock::guard ix(lock, fifolock_ix);
    CHECK_EQ(lock.held(fifolock_is) + lock.held(fifolock_ix), 2);
    CHECK_FALSE(fifolock::guard(lock, fifolock_s, std::try_to_lock).owns_lock());
    CHECK_FALSE(fifolock::guard(lock, fifolock_x, std::try_to_lock).owns_lock());
    {
        fifolock::guard six(lock, fifolock_six, std::try_to_lock); /* IX held: no */
        CHECK_FALSE(six.owns_lock());
    }
    auto taker = [&](const fifolock_mode *mode, int id) {
        fifolock::guard g(lock, *mode);
        std::lock_guard<std::mutex> l(log_mutex);
        order.push_back(id);
    };
    std::thread s(taker, &fifolock_s, 1);
    wait_queued(lock.native_handle(), 1);
    CHECK_FALSE(lock.try_acquire(fifolock_is)); /* compatible now, but S waits first */
    std::thread ix2(taker, &fifolock_ix, 2);
    wait_queued(lock.native_handle(), 2);
    CHECK_EQ(lock.held(fifolock_ix), 1);
    ix.unlock(); /* S fits now (with IS); the IX behind it waits for S */
    s.join();
    ix2.join();
    CHECK_EQ(order.size(), 2);
    if (order.size() == 2) {
        CHECK_EQ(order[0], 1);
        CHECK_EQ(order[1], 2);
    }
    ix.lock(); /* relock the same guard */
    CHECK_TRUE(ix.owns_lock());
    CHECK_EQ(lock.held(fifolock_ix), 1);
    CHECK_EQ(lock.held(fifolock_s), 0);
}

static void guard_and_thread_lock_report_misuse_as_system_error(void)
{
    fifolock::thread_lock lock;
    fifolock_mode no_predicate = { nullptr, "none", 0 };

    CHECK_EQ(error_of([] { fifolock::guard().lock(); }), EPERM);
    CHECK_EQ(error_of([] { fifolock::guard().unlock(); }), EPERM);
    CHECK_EQ(error_of([&] {
                 fifolock::guard g(lock, fifolock_x);
                 g.lock();
             }),
             EDEADLK);
    CHECK_EQ(error_of([&] {
                 fifolock::guard g(lock, fifolock_x, std::defer_lock);
                 g.unlock();
             }),
             EPERM);
    CHECK_EQ(error_of([&] { fifolock::guard g(lock, no_predicate); }), EINVAL);
    CHECK_EQ(error_of([&] { fifolock::guard g(lock, no_predicate, 5ms); }), EINVAL);
    CHECK_EQ(error_of([&] { lock.acquire(no_predicate); }), EINVAL);
    CHECK_EQ(error_of([&] { lock.try_acquire(no_predicate); }), EINVAL);
    CHECK_EQ(error_of([&] { lock.try_acquire_for(no_predicate, 1ms); }), EINVAL);
    CHECK_EQ(error_of([&] { lock.release(fifolock_x); }), EPERM);
    CHECK_EQ(error_of([&] {
                 fifolock::guard g(lock, fifolock_x);
                 fifolock::guard h(lock, fifolock_x, std::defer_lock);
                 if (h.try_lock() || h.try_lock_for(1ms) ||
                     h.try_lock_until(std::chrono::system_clock::now() + 1ms))
                     throw 1;
             }),
             0);
    /* nothing of those is left behind */
    CHECK_EQ(lock.waiting(), 0);
    CHECK_EQ(lock.held(fifolock_x), 0);
    CHECK_EQ(lock.held(no_predicate), 0);
    std::error_code code;
    try {
        lock.release(fifolock_s);
    } catch (const std::system_error &e) {
        code = e.code();
    }
    CHECK_TRUE(code == std::errc::operation_not_permitted);

    /* adopt: the guard releases a hold taken by hand */
    lock.acquire(fifolock_six);
    {
        fifolock::guard g(lock, fifolock_six, std::adopt_lock);
        CHECK_TRUE(g.owns_lock());
        CHECK_TRUE(g.mode() == &fifolock_six);
    }
    CHECK_EQ(lock.held(fifolock_six), 0);
    CHECK_TRUE(lock.try_acquire_until(fifolock_six, manual_clock::time_point(0ms)));
    lock.release(fifolock_six);
}

/* A mode no lock could ever grant: std::system_error(EDEADLK) at once, from every call. */
static void guard_and_thread_lock_refuse_a_mode_that_never_fits_at_once(void)
{
    fifolock::thread_lock lock;
    fifolock_mode none = FIFOLOCK_SEMAPHORE(0);
    auto t0 = std::chrono::steady_clock::now();

    CHECK_EQ(error_of([&] { fifolock::guard g(lock, none); }), EDEADLK);
    CHECK_EQ(error_of([&] { fifolock::guard g(lock, none, 5s); }), EDEADLK);
    CHECK_EQ(error_of([&] { lock.acquire(none); }), EDEADLK);
    CHECK_EQ(error_of([&] { lock.try_acquire(none); }), EDEADLK); /* not a false "busy" */
    CHECK_EQ(error_of([&] { lock.try_acquire_for(none, 5s); }), EDEADLK);
    CHECK_EQ(error_of([&] {
                 lock.try_acquire_until(none, std::chrono::system_clock::now() + 5s);
             }),
             EDEADLK);
    CHECK_EQ(error_of([&] {
                 fifolock::guard g(lock, none, std::defer_lock);
                 g.try_lock();
             }),
             EDEADLK);
    CHECK_TRUE(std::chrono::steady_clock::now() - t0 < 2s); /* at once, not at a deadline */
    /* behind a holder and a waiter too; nothing is left behind */
    fifolock::guard w(lock, fifolock_write);
    CHECK_EQ(error_of([&] { fifolock::guard g(lock, none); }), EDEADLK);
    CHECK_EQ(lock.waiting(), 0);
    CHECK_EQ(lock.held(none), 0);
    CHECK_EQ(lock.held(fifolock_write), 1);
}

/* At most `limit` holders, and never together with fifolock_write: the README's own mode. */
static bool limited_reader(const fifolock_mode *self, const fifolock_holds *holds)
{
    return fifolock_held(holds, self) < self->limit && fifolock_held(holds, &fifolock_write) == 0;
}

static void guard_with_a_users_own_mode(void)
{
    static const fifolock_mode reader2 = { limited_reader, "reader2", 2 };
    fifolock::thread_lock lock;
    std::atomic<int> third_in{ 0 };

    {
        fifolock::guard a(lock, reader2), b(*lock.native_handle(), reader2, 5ms);
        CHECK_TRUE(a.owns_lock() && b.owns_lock());
        CHECK_FALSE(fifolock::guard(lock, reader2, std::try_to_lock).owns_lock());
        CHECK_FALSE(fifolock::guard(*lock.native_handle(), reader2,
                                    std::chrono::system_clock::now() + 5ms)
                        .owns_lock());
        std::thread t([&] {
            fifolock::guard c(lock, reader2);
            third_in = 1;
        });
        wait_queued(lock.native_handle(), 1);
        CHECK_EQ(third_in.load(), 0);
        b.unlock(); /* room for one more: the waiting one */
        t.join();
        CHECK_EQ(third_in.load(), 1);
        CHECK_EQ(lock.held(reader2), 1);
    }
    CHECK_EQ(lock.held(reader2), 0);
    fifolock::guard w(lock, fifolock_write); /* the joiner's predicate decides: reader2's says no */
    CHECK_FALSE(fifolock::guard(lock, reader2, std::try_to_lock).owns_lock());
}

/* A guard is a Lockable: condition_variable_any waits on it directly. */
static void condition_variable_any_waits_on_a_guard(void)
{
    fifolock::thread_lock lock;
    std::condition_variable_any cv;
    bool ready = false;
    bool owned_after = false;

    std::thread t([&] {
        fifolock::guard g(lock, fifolock_x);
        cv.wait(g, [&] { return ready; });
        owned_after = g.owns_lock() && lock.held(fifolock_x) == 1;
    });
    {
        fifolock::guard g(lock, fifolock_x);
        ready = true;
    }
    cv.notify_all();
    t.join();
    CHECK_TRUE(owned_after);
    CHECK_EQ(lock.held(fifolock_x), 0);
}

/* The guard on the C lock of a fifolock::shared_mutex (its native handle). */
static void guard_takes_a_native_fifolock_mt(void)
{
    fifolock::shared_mutex m;
    {
        fifolock::guard g(*m.native_handle(), fifolock_read);
        CHECK_TRUE(g.owns_lock());
        CHECK_TRUE(m.try_lock_shared()); /* the same lock, the same mode */
        CHECK_FALSE(m.try_lock());
        m.unlock_shared();
    }
    CHECK_TRUE(m.try_lock());
    m.unlock();
}

RUN_TESTS(TEST(mutex_grants_waiters_in_the_order_they_queued),
          TEST(shared_mutex_queues_readers_behind_a_waiting_writer),
          TEST(shared_mutex_readers_hold_it_together),
          TEST(mutex_excludes_under_contention),
          TEST(shared_mutex_excludes_writers_from_readers_under_contention),
          TEST(try_lock_for_gives_up_after_the_time_and_leaves_no_trace),
          TEST(try_lock_until_works_with_steady_system_and_offset_clocks),
          TEST(shared_timed_calls_time_out_against_a_writer_and_share_with_readers),
          TEST(extreme_times_try_once_or_wait_without_overflow),
          TEST(try_lock_until_follows_a_clock_that_is_not_steady),
          TEST(condition_variable_any_works_with_unique_lock_of_a_fifolock_mutex),
          TEST(scoped_lock_of_two_fifolock_mutexes_never_deadlocks),
          TEST(unique_lock_timed_constructors_work_with_fifolock_mutex),
          TEST(guard_on_a_semaphore_admits_its_size_then_queues),
          TEST(guard_with_intention_modes_keeps_the_matrix_and_the_order),
          TEST(guard_with_a_users_own_mode),
          TEST(guard_and_thread_lock_report_misuse_as_system_error),
          TEST(guard_and_thread_lock_refuse_a_mode_that_never_fits_at_once),
          TEST(condition_variable_any_waits_on_a_guard),
          TEST(guard_takes_a_native_fifolock_mt))
