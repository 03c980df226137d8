# The command line with --etcd (tools/backend_etcd.c), against a real etcd the
# script starts on loopback with tests/etcd/etcd-up.sh; built and run only
# when the etcd library is, skipped (77) when etcd is not installed. The shm
# side of the command line is tested from tests/shm.cmake.
if(NOT TARGET fifolock_tool OR NOT FIFOLOCK_ETCD_BUILT)
  return()
endif()
find_program(FIFOLOCK_CLI_BASH bash)
if(FIFOLOCK_CLI_BASH)
  add_test(NAME test_fifolock_cli_etcd
    COMMAND ${FIFOLOCK_CLI_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/test_fifolock_cli_etcd.sh
      $<TARGET_FILE:fifolock_tool> ${CMAKE_CURRENT_SOURCE_DIR}/etcd)
  set_tests_properties(test_fifolock_cli_etcd PROPERTIES TIMEOUT 90 SKIP_RETURN_CODE 77
    RESOURCE_LOCK etcd LABELS "etcd;tool")
  fifolock_test_needs(fifolock_tool etcd tool)
endif()
