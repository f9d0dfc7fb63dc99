// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as GPT, zlib and
// Ethernet use it: crc32("123456789") == 0xcbf43926.
#pragma once

#include "kernel/lib/types.hpp"

// The CRC of `n` bytes; pass a previous result as `prev` to continue it over
// more bytes (crc32(b, n2, crc32(a, n1)) is the CRC of a followed by b).
u32 crc32(const void *p, usize n, u32 prev = 0);
