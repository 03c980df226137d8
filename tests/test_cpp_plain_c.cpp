/*
 * A C++ file that includes the C header only, linked into the
 * test_cpp_header_* programs beside one that includes fifolock.hpp: a C++
 * function taking fifolock_mt and fifolock_mode links across the two only if
 * both files name the same types (fifolock.hpp renames nothing: in C++ the
 * C headers name the event-loop lock fifolock_lock, whoever includes them).
 */
#include <fifolock_mt.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

std::size_t plain_c_holders(fifolock_mt *lock, const fifolock_mode *mode);

std::size_t plain_c_holders(fifolock_mt *lock, const fifolock_mode *mode)
{
    return fifolock_mt_held(lock, mode);
}

/* The C static initializer in C++: a constant expression (constinit in C++20). */
#if __cplusplus >= 202002L
constinit
#endif
    fifolock_mt plain_c_global = FIFOLOCK_MT_INITIALIZER;

bool plain_c_global_is_new_and_works();

bool plain_c_global_is_new_and_works()
{
    fifolock_mt made;

    if (fifolock_mt_init(&made) != 0 || std::memcmp(&made, &plain_c_global, sizeof made) != 0)
        return false;
    return fifolock_mt_acquire(&plain_c_global, &fifolock_write) == 0 &&
           fifolock_mt_try_acquire(&plain_c_global, &fifolock_read) == EBUSY &&
           fifolock_mt_release(&plain_c_global, &fifolock_write) == 0 &&
           fifolock_mt_destroy(&plain_c_global) == 0 && fifolock_mt_destroy(&made) == 0;
}
