/* fuzz_util: small helpers shared by the libFuzzer targets of tests/fuzz.
 *
 * fz_memfile writes bytes to an anonymous memory file and returns a path
 * (/proc/self/fd/N) that open() and mmap() accept, so readers that take a
 * path (gguf_open) see exactly the fuzzer's bytes without touching a disk.
 * fz_check aborts with a message: a target's own invariant failing is a
 * finding, reported to libFuzzer as a crash.
 */
#ifndef HELIUM_FUZZ_UTIL_H
#define HELIUM_FUZZ_UTIL_H

/* needs _GNU_SOURCE (memfd_create): tests/fuzz/CMakeLists.txt defines it */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define fz_check(cond, ...)                                                                                          \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
            abort();                                                                                                 \
        }                                                                                                            \
    } while (0)

/* Returns an fd holding data[0..len) (rewound), path set to its /proc name;
 * -1 on failure. The caller closes the fd. */
static inline int fz_memfile(const uint8_t *data, size_t len, char *path, size_t path_len) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    snprintf(path, path_len, "/proc/self/fd/%d", fd);
    return fd;
}

/* True if s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static inline int fz_utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

#endif
