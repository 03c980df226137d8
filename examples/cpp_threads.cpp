/*
 * cpp_threads.cpp: fifolock.hpp with the standard's lock types.
 *
 * Part 1: a fifolock::shared_mutex behind std::shared_lock and
 * std::unique_lock. While a reader holds it, a writer asks, then a reader:
 * the late reader could share with the one inside, but it queues behind the
 * writer, so it reads what the writer wrote. A stream of readers never
 * starves a writer.
 *
 * Part 2: a fifolock::mutex with std::condition_variable_any: producers
 * and consumers of a work queue, unchanged from std::mutex code.
 *
 * Part 3: fifolock::guard with intention modes on a table: row writers take
 * IX, a table scan takes S and waits for them; an IX that comes after the
 * scan waits for it (first come, first served).
 */
#include <fifolock.hpp>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

static int failures;

static void expect(bool ok, const char *what)
{
    std::printf("  %s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok)
        failures++;
}

/* Until `n` threads wait on `lock`: the order in which they queued is then known. */
static void until_queued(fifolock_mt *lock, std::size_t n)
{
    while (fifolock_mt_waiting(lock) < n)
        std::this_thread::yield();
}

static void part1_writer_is_not_jumped()
{
    fifolock::shared_mutex m;
    std::string config = "v1";
    std::string late_reader_saw;

    std::printf("part 1: shared_mutex, strictly FIFO\n");
    std::shared_lock<fifolock::shared_mutex> inside(m);
    std::thread writer([&] {
        std::unique_lock<fifolock::shared_mutex> w(m);
        config = "v2";
    });
    until_queued(m.native_handle(), 1);
    std::thread late_reader([&] {
        std::shared_lock<fifolock::shared_mutex> r(m);
        late_reader_saw = config;
    });
    until_queued(m.native_handle(), 2);
    expect(!m.try_lock_shared(), "a new reader may not pass the waiting writer");
    inside.unlock();
    writer.join();
    late_reader.join();
    expect(late_reader_saw == "v2", "the reader that came after the writer reads v2");
}

static void part2_condition_variable_any()
{
    fifolock::mutex m;
    std::condition_variable_any ready;
    std::deque<int> jobs;
    long done = 0, sum = 0;
    const int n = 1000;

    std::printf("part 2: mutex with condition_variable_any\n");
    std::vector<std::thread> workers;
    for (int i = 0; i < 2; i++)
        workers.emplace_back([&] {
            std::unique_lock<fifolock::mutex> l(m);
            for (;;) {
                ready.wait(l, [&] { return !jobs.empty(); });
                int job = jobs.front();
                jobs.pop_front();
                if (job == 0)
                    return;
                sum += job;
                done++;
            }
        });
    for (int i = 1; i <= n; i++) {
        std::lock_guard<fifolock::mutex> l(m);
        jobs.push_back(i);
        ready.notify_one();
    }
    {
        std::lock_guard<fifolock::mutex> l(m);
        jobs.push_back(0);
        jobs.push_back(0);
    }
    ready.notify_all();
    for (auto &w : workers)
        w.join();
    expect(done == n && sum == n * (n + 1L) / 2, "every job done once");
}

static void part3_intention_modes()
{
    fifolock::thread_lock table;
    std::vector<std::string> log;
    std::mutex log_mutex;
    auto note = [&](const char *what) {
        std::lock_guard<std::mutex> l(log_mutex);
        log.push_back(what);
    };

    std::printf("part 3: guard with intention modes\n");
    fifolock::guard row_writer(table, fifolock_ix);
    std::thread scan([&] {
        fifolock::guard s(table, fifolock_s); /* waits for the IX holder */
        note("scan");
    });
    until_queued(table.native_handle(), 1);
    std::thread late_row_writer([&] {
        fifolock::guard ix(table, fifolock_ix); /* IX shares with IX, but the scan came first */
        note("late row writer");
    });
    until_queued(table.native_handle(), 2);
    note("row writer done");
    row_writer.unlock();
    scan.join();
    late_row_writer.join();
    expect(log.size() == 3 && log[0] == "row writer done" && log[1] == "scan" &&
               log[2] == "late row writer",
           "row writer, then the scan, then the late row writer");
}

int main()
{
    part1_writer_is_not_jumped();
    part2_condition_variable_any();
    part3_intention_modes();
    std::printf("%s\n", failures ? "FAILED" : "all stories hold");
    return failures ? 1 : 0;
}
