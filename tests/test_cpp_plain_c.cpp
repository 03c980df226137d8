/*
 * A C++ file that includes the C header only, linked into the
 * test_cpp_header_* programs beside one that includes fifolock.hpp: a C++
 * function taking fifolock_mt and fifolock_mode links across the two only if
 * both files name the same types (fifolock.hpp renames nothing but the
 * event-loop lock's struct tag).
 */
#include <fifolock_mt.h>

#include <cstddef>

std::size_t plain_c_holders(fifolock_mt *lock, const fifolock_mode *mode);

std::size_t plain_c_holders(fifolock_mt *lock, const fifolock_mode *mode)
{
    return fifolock_mt_held(lock, mode);
}
