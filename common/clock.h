/* clock: the time sources of every Helium process.
 *
 * clock_wall_us() is microseconds since the Unix epoch (CLOCK_REALTIME): the
 * unit of every *_us field on the wire (proto/helium.proto). clock_mono_ms()
 * and clock_mono_us() are monotonic counts for timers, liveness and
 * durations, immune to wall clock steps. Header-only: each is one
 * clock_gettime call.
 */
#ifndef HELIUM_CLOCK_H
#define HELIUM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline int64_t clock_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
