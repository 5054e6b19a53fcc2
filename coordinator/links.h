/* links: the coordinator's model of each worker pair's KV pull cost,
 *
 *     seconds = fixed + bytes / rate,
 *
 * fitted per (source, destination, transport) from the pulls workers report
 * (OpResult.pull_us, pull_bytes, pull_xport): least squares with exponential
 * forgetting (a pull weighs LINKS_DECAY^k after k newer ones), so a pair's
 * figure follows a link that changes. With pulls of one size only, the fit
 * goes through the origin (a rate, no fixed cost: so after the first pull);
 * a negative fixed cost or rate is refitted through the origin too. Routing prices a pull with its
 * pair's fit once the pair has LINKS_MIN_PULLS pulls, else with the
 * destination's measured rate (workers.c) or the defaults (route.h).
 * Slots are directory slots (< DIR_MAX_WORKERS); rows are allocated on
 * first use. Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_COORD_LINKS_H
#define HELIUM_COORD_LINKS_H

#include <stdbool.h>
#include <stdint.h>

#define LINKS_MIN_PULLS 1
#define LINKS_DECAY 0.875

typedef struct links links_t;

links_t *links_new(void);
void links_destroy(links_t **self_p);
/* One pull of `bytes` from src into dst that took `seconds` of link time.
 * Ignored when bytes or seconds are not positive or a slot is out of range. */
void links_observe(links_t *l, int src, int dst, bool xport, double bytes, double seconds);
/* The pair's fit: true with *fixed_s (>= 0) and *bytes_s (> 0) once it has
 * LINKS_MIN_PULLS pulls; *n (may be NULL) the pulls seen. */
bool links_fit(const links_t *l, int src, int dst, bool xport, double *fixed_s, double *bytes_s, uint32_t *n);
/* Predicted link seconds for `bytes` from src into dst; < 0 when the pair has
 * no fit yet. (The shape route.h's pair_time hook takes.) */
double links_time(const void *l, int src, int dst, bool xport, double bytes);
/* Forgets every pair with slot on either side (its worker was lost: a new
 * one may take the slot). */
void links_forget(links_t *l, int slot);

#endif
