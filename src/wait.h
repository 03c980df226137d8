/*
 * The waiting layer: all the thread lock (mt.c) asks of the operating
 * system. One implementation is built, chosen by CMake (FIFOLOCK_WAIT):
 *
 *   wait_futex.c    Linux: futex(2), FUTEX_WAIT_BITSET on CLOCK_MONOTONIC
 *   wait_win32.c    Windows 8+: WaitOnAddress / WakeByAddress*
 *   wait_darwin.c   macOS: os_sync_wait_on_address (14.4+), else __ulock_wait
 *   wait_umtx.c     FreeBSD: _umtx_op(UMTX_OP_WAIT_UINT_PRIVATE)
 *   wait_parking.c  anywhere with POSIX threads: threads parked on condition
 *                   variables in a small table keyed by address (the idea of
 *                   WebKit's ParkingLot and Rust's parking_lot_core)
 *
 * The contract, which the spin model of mt.c (tests/model/fifolock_mt.pml)
 * assumes and nothing more:
 *
 *   fifolock__wait(addr, val, deadline)
 *       If *addr != val, returns at once. Otherwise sleeps until a wake on
 *       addr, or until `deadline` (absolute, CLOCK_MONOTONIC; NULL: none)
 *       has passed. The comparison and the going to sleep are one step with
 *       respect to wakes: a wake on addr after a store that changed *addr can
 *       never be missed. Returns ETIMEDOUT when the deadline passed, else 0;
 *       may return 0 early for no reason (a spurious wakeup), so callers
 *       check their word again. Keeps errno.
 *   fifolock__wake_one(addr), fifolock__wake_all(addr)
 *       Wakes one, or every, thread sleeping in fifolock__wait on addr (none
 *       is fine). Called after the store the sleepers wait for. Keep errno;
 *       can't fail.
 *
 * `addr` is a 32-bit word of this process, aligned, read and written only
 * with atomic operations. A wake on a word that was freed meanwhile is
 * harmless (mt.c wakes its lock's word after letting go of it, as a pthread
 * mutex does): at worst a thread sleeping on memory reused at that address
 * wakes spuriously.
 */
#ifndef FIFOLOCK_WAIT_H
#define FIFOLOCK_WAIT_H

#include "internal.h"

#include <stdint.h>
#include <time.h>

FIFOLOCK_HIDDEN int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline);
FIFOLOCK_HIDDEN void fifolock__wake_one(uint32_t *addr);
FIFOLOCK_HIDDEN void fifolock__wake_all(uint32_t *addr);

/* The name of the layer built in ("futex", "parking", ...), for tests and benches. */
FIFOLOCK_HIDDEN extern const char fifolock__wait_layer[];

#endif
