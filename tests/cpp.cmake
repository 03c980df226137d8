# The C++ header (include/fifolock.hpp). Registered only where a C++ compiler
# exists; the project itself is C only, so C++ is enabled here, for these
# tests alone. In the gcc build they build with g++ (and run under valgrind
# too), in the sanitizer builds with clang++ (the Makefile sets CXX).
#
#   test_cpp               mutex, shared_mutex, guard: threads, std lock types
#   test_cpp_event         event_lock, hold, request (the event-loop lock)
#   test_cpp_header_*      the header alone, C++17 and C++20, -pedantic and
#                          more warnings as errors; and with -fno-exceptions;
#                          linked with a C++ file that includes the C headers
#                          only (the C types are the same in both)
#   test_cpp_c_header_first   the C headers before fifolock.hpp (the other
#                          tests include it first): both orders work, no
#                          macro renames anything, fifolock_lock is the C lock
#   example_cpp_*          examples/cpp_*.cpp, with the examples

option(FIFOLOCK_CXX_TESTS "Build and run the C++ header's tests where a C++ compiler exists" ON)
if(NOT FIFOLOCK_MT OR NOT FIFOLOCK_CXX_TESTS)
  return() # the header wraps the thread lock
endif()
include(CheckLanguage)
check_language(CXX)
if(NOT CMAKE_CXX_COMPILER)
  message(STATUS "no C++ compiler found: the C++ tests are not registered")
  return()
endif()
enable_language(CXX)

# C++17 (or `std`) and the project's warnings, less those valid for C only.
function(fifolock_cxx_target target std)
  get_target_property(opts ${target} COMPILE_OPTIONS)
  if(opts)
    list(REMOVE_ITEM opts -Wstrict-prototypes -Wmissing-prototypes)
    set_target_properties(${target} PROPERTIES COMPILE_OPTIONS "${opts}")
  endif()
  set_target_properties(${target} PROPERTIES
    CXX_STANDARD ${std} CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
endfunction()

fifolock_add_test(test_cpp test_cpp.cpp TIMEOUT 120 LABELS cpp mt)
fifolock_cxx_target(test_cpp 17)
fifolock_add_test(test_cpp_event test_cpp_event.cpp TIMEOUT 60 LABELS cpp)
fifolock_cxx_target(test_cpp_event 17)

set(FIFOLOCK_CXX_STRICT -pedantic -Wconversion -Wsign-conversion -Wold-style-cast
  -Wcast-qual -Wnon-virtual-dtor -Woverloaded-virtual -Wundef)
foreach(std 17 20)
  fifolock_add_test(test_cpp_header_cxx${std} test_cpp_header.cpp test_cpp_plain_c.cpp TIMEOUT 60 LABELS cpp
    NO_VALGRIND)
  fifolock_cxx_target(test_cpp_header_cxx${std} ${std})
  target_compile_options(test_cpp_header_cxx${std} PRIVATE ${FIFOLOCK_CXX_STRICT})
endforeach()
fifolock_add_test(test_cpp_header_no_exceptions test_cpp_header.cpp test_cpp_plain_c.cpp
  TIMEOUT 60 LABELS cpp
  NO_VALGRIND)
fifolock_cxx_target(test_cpp_header_no_exceptions 17)
target_compile_options(test_cpp_header_no_exceptions PRIVATE ${FIFOLOCK_CXX_STRICT}
  -fno-exceptions)

fifolock_add_test(test_cpp_c_header_first test_cpp_c_header_first.cpp TIMEOUT 60 LABELS cpp
  NO_VALGRIND)
fifolock_cxx_target(test_cpp_c_header_first 17)
target_compile_options(test_cpp_c_header_first PRIVATE ${FIFOLOCK_CXX_STRICT})

# examples/cpp_*.cpp: built beside the C examples (so `make demo` runs them)
# and run as tests, as examples/CMakeLists.txt does for examples/*.c.
if(FIFOLOCK_EXAMPLES)
  file(GLOB FIFOLOCK_CPP_EXAMPLES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/examples/cpp_*.cpp)
  foreach(src ${FIFOLOCK_CPP_EXAMPLES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(example_${name} ${src})
    fifolock_cxx_target(example_${name} 17)
    set_target_properties(example_${name} PROPERTIES OUTPUT_NAME ${name}
      RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/examples)
    target_link_libraries(example_${name} PRIVATE fifolock_static Threads::Threads)
    add_test(NAME example_${name} COMMAND example_${name})
    set_tests_properties(example_${name} PROPERTIES TIMEOUT 60 LABELS "example;cpp")
  endforeach()
endif()
