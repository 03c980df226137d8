# The engine's tests: unit tests of fifolock.h and a randomized model-based test.
fifolock_add_test(test_engine test_engine.c LABELS engine)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux" AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  # The library's realloc() is routed through the test, which makes it fail on
  # demand to reach the ENOMEM paths.
  target_link_options(test_engine PRIVATE -Wl,--wrap=realloc)
  target_compile_definitions(test_engine PRIVATE FIFOLOCK_TEST_WRAP_REALLOC)
endif()
fifolock_add_test(test_model test_model.c LABELS engine)
fifolock_add_test(test_rule test_rule.c LABELS engine)
fifolock_add_test(test_weighted test_weighted.c LABELS engine)
