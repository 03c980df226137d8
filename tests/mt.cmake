# The thread lock (src/mt.c, on the waiting layer src/wait_*.c). A deadlock
# fails by the 60 s timeout, never hangs. test_wait checks the layer's
# contract (src/wait.h) itself.
if(NOT FIFOLOCK_MT)
  return()
endif()
fifolock_add_test(test_wait test_wait.c TIMEOUT 60 LABELS mt)
fifolock_add_test(test_mt test_mt.c TIMEOUT 60 LABELS mt)
fifolock_add_test(test_mt_stress test_mt_stress.c TIMEOUT 60 LABELS mt stress)
fifolock_add_test(test_mt_weighted test_mt_weighted.c TIMEOUT 60 LABELS mt)
# Conversions and weighted requests under load, for a bounded time (about 2 s).
fifolock_add_test(test_mt_convert_stress test_mt_convert_stress.c TIMEOUT 60 LABELS mt stress)
