# Cross-builds for Windows (x86-64) with Debian's mingw-w64:
#   apt-get install gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine64
#   cmake -S . -B build-mingw --toolchain cmake/mingw-w64.cmake   (or: --preset mingw)
# The test programs run under wine, which CTest starts for each
# (CMAKE_CROSSCOMPILING_EMULATOR). Programs are linked statically, so that
# wine needs no MinGW DLLs beside them.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(FIFOLOCK_MINGW_PREFIX x86_64-w64-mingw32)
# The -posix compilers: their C++ library has std::thread and std::mutex
# (on winpthreads); the -win32 ones have not.
find_program(CMAKE_C_COMPILER NAMES ${FIFOLOCK_MINGW_PREFIX}-gcc-posix ${FIFOLOCK_MINGW_PREFIX}-gcc)
find_program(CMAKE_CXX_COMPILER NAMES ${FIFOLOCK_MINGW_PREFIX}-g++-posix ${FIFOLOCK_MINGW_PREFIX}-g++)
set(CMAKE_RC_COMPILER ${FIFOLOCK_MINGW_PREFIX}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${FIFOLOCK_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# C99's printf (%zu, %lld) rather than msvcrt's.
set(CMAKE_C_FLAGS_INIT "-D__USE_MINGW_ANSI_STDIO=1")
set(CMAKE_CXX_FLAGS_INIT "-D__USE_MINGW_ANSI_STDIO=1")
# pkg-config must not offer the build machine's libraries (libcurl...).
set(ENV{PKG_CONFIG_LIBDIR} ${CMAKE_FIND_ROOT_PATH}/lib/pkgconfig)
find_program(FIFOLOCK_WINE NAMES wine64 wine)
if(FIFOLOCK_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FIFOLOCK_WINE})
endif()
