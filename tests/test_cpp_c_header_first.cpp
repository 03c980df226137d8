/*
 * Must not compile, with a message that says what to do: in C++ the C
 * header declares `struct fifolock` at global scope, where fifolock.hpp's
 * namespace fifolock cannot then be. tests/cpp.cmake checks the message.
 */
#include <fifolock.h>
#include <fifolock.hpp>

int main()
{
    return 0;
}
