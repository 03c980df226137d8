fifolock_add_test(test_smoke smoke.c LABELS engine)
