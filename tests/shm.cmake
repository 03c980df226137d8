# The shared-memory lock (src/shm.c). Its tests fork and kill processes; a
# deadlock fails by the timeout, never hangs. The torture test kills hundreds
# of processes at random moments: not under valgrind (too slow to be useful,
# and the killed children would report as errors).
fifolock_add_test(test_shm test_shm.c TIMEOUT 120 LABELS shm)
fifolock_add_test(test_shm_torture test_shm_torture.c TIMEOUT 120 LABELS shm stress NO_VALGRIND)
# The command line (tools/), if it is built.
if(TARGET fifolock_tool)
  find_program(FIFOLOCK_SHM_BASH bash)
  if(FIFOLOCK_SHM_BASH)
    add_test(NAME test_fifolock_cli
      COMMAND ${FIFOLOCK_SHM_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/test_fifolock_cli.sh
        $<TARGET_FILE:fifolock_tool>)
    set_tests_properties(test_fifolock_cli PROPERTIES TIMEOUT 60 LABELS "shm;tool")
  endif()
endif()
