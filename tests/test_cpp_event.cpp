/*
 * fifolock.hpp's event-loop wrapper: fifolock::event_lock, fifolock::hold
 * (one hold, released on destruction) and fifolock::request (a queued
 * waiter, cancelled or released on destruction), with the C semantics
 * unchanged: callbacks run inside the release or cancel that made room, in
 * queue order, and may call back into the lock or destroy their request.
 */
/* The header's checks of the caller's contract, counted instead of asserted. */
static int contract_breaches;
#define FIFOLOCK_HPP_ASSERT(cond) ((cond) ? (void)0 : (void)++contract_breaches)

#include <fifolock.hpp>

#include "check.h"

#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

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

/* A mode is known by its address: a temporary one does not bind where it is kept. */
template <class M, class = void>
struct can_try : std::false_type {};
template <class M>
struct can_try<M, decltype((void)std::declval<fifolock::event_lock &>().try_acquire(std::declval<M>()))>
    : std::true_type {};
static_assert(can_try<const fifolock_mode &>::value, "");
static_assert(!can_try<fifolock_mode>::value, "");
template <class M, class = void>
struct can_request : std::false_type {};
template <class M>
struct can_request<M, decltype((void)std::declval<fifolock::request &>().acquire(
                          std::declval<fifolock::event_lock &>(), std::declval<M>(),
                          static_cast<fifolock::request::callback *>(nullptr), nullptr))>
    : std::true_type {};
static_assert(can_request<const fifolock_mode &>::value, "");
static_assert(!can_request<fifolock_mode>::value, "");

/* A callable that logs its id when its request is granted. */
struct logger {
    std::vector<int> *log;
    int id;
    void operator()(fifolock::request &r)
    {
        log->push_back(r.owns() ? id : -id); /* the request holds the mode when told */
    }
};

static void try_acquire_returns_a_hold_released_on_destruction(void)
{
    fifolock::event_lock lock;

    {
        fifolock::hold w = lock.try_acquire(fifolock_write);
        CHECK_TRUE(w.owns());
        CHECK_TRUE(w.mode() == &fifolock_write);
        CHECK_EQ(lock.held(fifolock_write), 1);
        fifolock::hold r = lock.try_acquire(fifolock_read);
        CHECK_FALSE(r); /* EBUSY: empty */
        CHECK_EQ(lock.held(fifolock_read), 0);
    }
    CHECK_EQ(lock.held(fifolock_write), 0);

    fifolock_mode sem = FIFOLOCK_SEMAPHORE(2);
    fifolock::hold a = lock.try_acquire(sem);
    fifolock::hold b = lock.try_acquire(sem);
    CHECK_FALSE(lock.try_acquire(sem).owns());
    CHECK_EQ(lock.held(sem), 2);
    a = std::move(b); /* a's old hold is released; b's moves over */
    CHECK_EQ(lock.held(sem), 1);
    CHECK_FALSE(b.owns());
    a.release();
    CHECK_FALSE(a.owns());
    CHECK_EQ(lock.held(sem), 0);
    a.release(); /* nothing left: nothing happens */
    CHECK_EQ(lock.held(sem), 0);
}

/* Write held; queued: read 1, read 2, write 3, read 4. */
static void requests_are_granted_in_queue_order_inside_the_release(void)
{
    fifolock::event_lock lock;
    std::vector<int> log;
    logger l1{ &log, 1 }, l2{ &log, 2 }, l3{ &log, 3 }, l4{ &log, 4 };
    fifolock::request r1, r2, r3, r4;

    fifolock::hold w = lock.try_acquire(fifolock_write);
    CHECK_FALSE(r1.acquire(lock, fifolock_read, l1));
    CHECK_FALSE(r2.acquire(lock, fifolock_read, l2));
    CHECK_FALSE(r3.acquire(lock, fifolock_write, l3));
    CHECK_FALSE(r4.acquire(lock, fifolock_read, l4));
    CHECK_EQ(lock.waiting(), 4);
    CHECK_TRUE(r1.queued() && !r1.owns());
    CHECK_FALSE(lock.try_acquire(fifolock_read).owns()); /* no barging */
    w.release();                                          /* grants 1 and 2, here */
    CHECK_EQ(log.size(), 2);
    CHECK_TRUE(r1.owns() && r2.owns() && !r1.queued());
    CHECK_TRUE(r3.queued() && r4.queued());
    r1.release();
    CHECK_EQ(log.size(), 2);
    fifolock::hold h2 = r2.take(); /* the hold moves out of the request */
    CHECK_FALSE(r2.owns());
    CHECK_EQ(lock.held(fifolock_read), 1);
    h2.release(); /* grants 3 */
    CHECK_EQ(log.size(), 3);
    CHECK_EQ(lock.held(fifolock_write), 1);
    r3.release(); /* grants 4 */
    CHECK_EQ(log.size(), 4);
    for (std::size_t i = 0; i < log.size(); i++)
        CHECK_EQ(log[i], static_cast<int>(i) + 1);
    CHECK_TRUE(r4.owns());
    /* r4 is still holding: its destructor releases it */
}

static void a_request_destroyed_while_queued_cancels_and_lets_those_behind_in(void)
{
    fifolock::event_lock lock;
    std::vector<int> log;
    logger lw{ &log, 1 }, lr{ &log, 2 };
    fifolock::request reader;

    fifolock::hold r = lock.try_acquire(fifolock_read);
    {
        fifolock::request writer;
        CHECK_FALSE(writer.acquire(lock, fifolock_write, lw));
        CHECK_FALSE(reader.acquire(lock, fifolock_read, lr)); /* behind the writer */
        CHECK_EQ(lock.waiting(), 2);
    } /* the writer gives up: the reader behind it is granted in here */
    CHECK_EQ(log.size(), 1);
    if (log.size() == 1)
        CHECK_EQ(log[0], 2);
    CHECK_TRUE(reader.owns());
    CHECK_EQ(lock.held(fifolock_read), 2);
    CHECK_EQ(lock.waiting(), 0);
}

static void a_request_destroyed_holding_releases(void)
{
    fifolock::event_lock lock;
    std::vector<int> log;
    logger l{ &log, 1 };

    {
        fifolock::request now;
        CHECK_TRUE(now.acquire(lock, fifolock_write, l)); /* held at once: no callback */
        CHECK_TRUE(now.owns());
        CHECK_EQ(lock.held(fifolock_write), 1);
    }
    CHECK_EQ(lock.held(fifolock_write), 0);
    CHECK_EQ(log.size(), 0);
}

static void cancel_withdraws_a_queued_request_only(void)
{
    fifolock::event_lock lock;
    std::vector<int> log;
    logger l{ &log, 1 };
    fifolock::request req;

    CHECK_FALSE(req.cancel()); /* idle */
    fifolock::hold m = lock.try_acquire(fifolock_mutex);
    CHECK_FALSE(req.acquire(lock, fifolock_mutex, l));
    CHECK_TRUE(req.cancel());
    CHECK_FALSE(req.queued());
    CHECK_EQ(lock.waiting(), 0);
    m.release();
    CHECK_EQ(log.size(), 0); /* a cancelled request is never told */
    /* used again */
    m = lock.try_acquire(fifolock_mutex);
    CHECK_FALSE(req.acquire(lock, fifolock_mutex, l));
    m.release();
    CHECK_EQ(log.size(), 1);
    CHECK_FALSE(req.cancel()); /* granted: it holds, nothing to cancel */
    CHECK_TRUE(req.owns());
    req.release();
    CHECK_EQ(lock.held(fifolock_mutex), 0);
}

static void request_misuse_is_einval_and_changes_nothing(void)
{
    fifolock::event_lock lock;
    std::vector<int> log;
    logger l{ &log, 1 };
    fifolock_mode no_predicate = { nullptr, "none", 0 };
    fifolock::request req;

    CHECK_EQ(error_of([&] { req.acquire(lock, no_predicate, l); }), EINVAL);
    CHECK_FALSE(req.queued() || req.owns());
    CHECK_EQ(error_of([&] { lock.try_acquire(no_predicate); }), EINVAL);
    fifolock::hold x = lock.try_acquire(fifolock_x);
    CHECK_FALSE(req.acquire(lock, fifolock_s, l));
    CHECK_EQ(error_of([&] { req.acquire(lock, fifolock_is, l); }), EINVAL); /* still queued */
    CHECK_EQ(lock.waiting(), 1);
    x.release();
    CHECK_TRUE(req.owns());
    CHECK_EQ(error_of([&] { req.acquire(lock, fifolock_is, l); }), EINVAL); /* still holds */
    CHECK_EQ(lock.held(fifolock_s), 1);
    CHECK_EQ(lock.held(fifolock_is), 0);
    CHECK_EQ(log.size(), 1);
    /* a mode no lock could ever grant: EDEADLK at once, nothing queued */
    fifolock_mode none = FIFOLOCK_SEMAPHORE(0);
    fifolock::request never;
    CHECK_EQ(error_of([&] { never.acquire(lock, none, l); }), EDEADLK);
    CHECK_FALSE(never.queued() || never.owns());
    CHECK_EQ(error_of([&] { lock.try_acquire(none); }), EDEADLK);
    CHECK_EQ(lock.waiting(), 0);
}

/* A callback that destroys its own request, and one that queues another. */
struct chain {
    fifolock::event_lock *lock;
    std::unique_ptr<fifolock::request> self;
    fifolock::request next;
    std::vector<int> log;
};

static void on_granted_destroy(fifolock::request &r, void *arg)
{
    chain *c = static_cast<chain *>(arg);
    c->log.push_back(r.owns() ? 1 : -1);
    fifolock::hold h = r.take();
    c->self.reset(); /* the request's memory is gone: the wrapper must not touch it */
    /* h goes out of scope: released inside the release call that granted us */
}

static void on_granted_requeue(fifolock::request &r, void *arg)
{
    chain *c = static_cast<chain *>(arg);
    c->log.push_back(2);
    r.release();
    /* ask again from inside the callback (reentrant): the lock is idle now */
    if (r.acquire(*c->lock, fifolock_mutex, on_granted_requeue, arg))
        c->log.push_back(3);
}

static void callbacks_may_destroy_their_request_or_call_back_into_the_lock(void)
{
    fifolock::event_lock lock;
    chain c;

    c.lock = &lock;
    c.self = std::make_unique<fifolock::request>();
    fifolock::hold m = lock.try_acquire(fifolock_mutex);
    CHECK_FALSE(c.self->acquire(lock, fifolock_mutex, on_granted_destroy, &c));
    CHECK_FALSE(c.next.acquire(lock, fifolock_mutex, on_granted_requeue, &c));
    m.release(); /* grants self, which destroys itself and releases: grants next ... */
    CHECK_TRUE(c.self == nullptr);
    CHECK_EQ(c.log.size(), 3);
    if (c.log.size() == 3) {
        CHECK_EQ(c.log[0], 1);
        CHECK_EQ(c.log[1], 2);
        CHECK_EQ(c.log[2], 3); /* the lock was idle: taken at once inside the callback */
    }
    CHECK_TRUE(c.next.owns());
    CHECK_EQ(lock.held(fifolock_mutex), 1);
}

/* The C handles: a hold adopted from a C acquire, the waiter's data field. */
static void the_c_handles_stay_usable(void)
{
    fifolock::event_lock lock;

    CHECK_EQ(fifolock_try_acquire(lock.native_handle(), &fifolock_six), 0);
    {
        fifolock::hold h(*lock.native_handle(), fifolock_six, std::adopt_lock);
        CHECK_EQ(fifolock_held(fifolock_holds_of(lock.native_handle()), &fifolock_six), 1);
    }
    CHECK_EQ(lock.held(fifolock_six), 0);
    fifolock::request req;
    req.native_handle()->data = &lock;
    CHECK_TRUE(req.native_handle()->data == &lock);
}

/* Undefined for the standard's mutexes; here refused, reported to
   FIFOLOCK_HPP_ASSERT, and nothing changes. */
static void unlocking_what_is_not_held_is_reported_and_changes_nothing(void)
{
    contract_breaches = 0;
    {
        fifolock::mutex m;
        fifolock::shared_mutex s;
        fifolock::event_lock lock;

        m.unlock();
        CHECK_EQ(contract_breaches, 1);
        s.lock_shared();
        s.unlock(); /* holds read, not write */
        s.unlock_shared();
        s.unlock_shared();
        CHECK_EQ(contract_breaches, 3);
        CHECK_TRUE(m.try_lock() && s.try_lock());
        m.unlock();
        s.unlock();
        {
            fifolock::hold h = lock.try_acquire(fifolock_write);
            CHECK_EQ(fifolock_release(lock.native_handle(), &fifolock_write), 0); /* behind its back */
        } /* the hold's release finds nothing held */
        CHECK_EQ(contract_breaches, 4);
        CHECK_EQ(lock.held(fifolock_write), 0);
    }
    CHECK_EQ(contract_breaches, 4); /* destroyed unheld: nothing to report */
}

RUN_TESTS(TEST(try_acquire_returns_a_hold_released_on_destruction),
          TEST(requests_are_granted_in_queue_order_inside_the_release),
          TEST(a_request_destroyed_while_queued_cancels_and_lets_those_behind_in),
          TEST(a_request_destroyed_holding_releases),
          TEST(cancel_withdraws_a_queued_request_only),
          TEST(request_misuse_is_einval_and_changes_nothing),
          TEST(callbacks_may_destroy_their_request_or_call_back_into_the_lock),
          TEST(the_c_handles_stay_usable),
          TEST(unlocking_what_is_not_held_is_reported_and_changes_nothing))
