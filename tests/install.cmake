# Install test: `cmake --install` this build into a scratch prefix, then
# build and run tests/install/consumer.c against it through pkg-config and
# through find_package(fifolock); check the exported symbols, the soname and
# the man pages. See tests/install/run.sh.
#
# Not registered in sanitizer builds: the consumer is built without the
# -fsanitize flags the installed library was built with.
if(FIFOLOCK_SANITIZE OR CMAKE_CROSSCOMPILING)
  message(STATUS "a sanitizer or cross build: the install test is not registered")
  return()
endif()
find_program(FIFOLOCK_BASH bash)
if(NOT FIFOLOCK_BASH)
  message(STATUS "bash not found: the install test is not registered")
  return()
endif()
add_test(NAME install
  COMMAND ${FIFOLOCK_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/install/run.sh
    ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/install-test
    ${CMAKE_C_COMPILER} ${CMAKE_COMMAND}
    ${CMAKE_INSTALL_LIBDIR} ${CMAKE_INSTALL_INCLUDEDIR} ${CMAKE_INSTALL_MANDIR})
set_tests_properties(install PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS install)
