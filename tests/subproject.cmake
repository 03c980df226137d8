# Another project builds fifolock with add_subdirectory(): it gets the
# libraries only (no tests, examples, benches) and none of our -Werror.
if(FIFOLOCK_SANITIZE OR CMAKE_CROSSCOMPILING)
  return()
endif()
add_test(NAME subproject
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/subproject/run.sh ${PROJECT_SOURCE_DIR}
    ${CMAKE_CURRENT_BINARY_DIR}/subproject-test ${CMAKE_COMMAND} ${CMAKE_C_COMPILER})
set_tests_properties(subproject PROPERTIES TIMEOUT 300 LABELS install)
