# The engine's fuzz target (tests/fuzz/fuzz_engine.c), run once over its seed
# corpus as a regression test. It is built from the engine's sources (not
# src/mt.c), with the engine's invariant checks on and its allocations able to
# fail on demand (through the library's one seam, fifolock__alloc). With clang and
# AddressSanitizer it is a libFuzzer target; otherwise a plain program that
# reads the corpus files. `make fuzz` runs the fuzzer (tests/fuzz/run_fuzz.sh).
set(FIFOLOCK_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
file(GLOB FIFOLOCK_FUZZ_CORPUS CONFIGURE_DEPENDS ${FIFOLOCK_FUZZ_DIR}/corpus/*)

add_executable(fuzz_engine ${FIFOLOCK_FUZZ_DIR}/fuzz_engine.c
  ${PROJECT_SOURCE_DIR}/src/engine.c ${PROJECT_SOURCE_DIR}/src/modes.c
  ${PROJECT_SOURCE_DIR}/src/strerror.c)
target_include_directories(fuzz_engine PRIVATE ${PROJECT_SOURCE_DIR}/include
  ${PROJECT_SOURCE_DIR}/src)
# FIFOLOCK_DEBUG's checks are assert()s: keep them on in release build types.
target_compile_definitions(fuzz_engine PRIVATE FIFOLOCK_DEBUG)
target_compile_options(fuzz_engine PRIVATE -UNDEBUG)
# Given files (not a directory), libFuzzer runs each once and exits.
add_test(NAME fuzz_corpus COMMAND fuzz_engine ${FIFOLOCK_FUZZ_CORPUS})
if(CMAKE_C_COMPILER_ID STREQUAL "Clang" AND FIFOLOCK_SANITIZE MATCHES "address")
  target_compile_options(fuzz_engine PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_engine PRIVATE -fsanitize=fuzzer)
else()
  target_compile_definitions(fuzz_engine PRIVATE FIFOLOCK_FUZZ_MAIN)
  if(FIFOLOCK_VALGRIND AND VALGRIND)
    add_test(NAME fuzz_corpus_valgrind COMMAND ${VALGRIND} --error-exitcode=1
      --leak-check=full --errors-for-leak-kinds=definite,indirect -q
      $<TARGET_FILE:fuzz_engine> ${FIFOLOCK_FUZZ_CORPUS})
    set_tests_properties(fuzz_corpus_valgrind PROPERTIES TIMEOUT 600 LABELS "valgrind;fuzz")
  endif()
endif()
set_tests_properties(fuzz_corpus PROPERTIES TIMEOUT 300 LABELS "fuzz")
fifolock_test_needs(fuzz_engine fuzz)
