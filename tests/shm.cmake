# The shared-memory lock (src/shm.c). Its tests fork and kill processes; a
# deadlock fails by the timeout, never hangs. The torture test kills hundreds
# of processes at random moments: not under valgrind (too slow to be useful,
# and the killed children would report as errors).
fifolock_add_test(test_shm test_shm.c TIMEOUT 120 LABELS shm)
fifolock_add_test(test_shm_torture test_shm_torture.c TIMEOUT 120 LABELS shm stress NO_VALGRIND)
