// Basic freestanding types shared by the kernel and the host unit tests.
#pragma once

#include <stddef.h>
#include <stdint.h>

using u8 = uint8_t;
using u16 = uint16_t;
using u32 = uint32_t;
using u64 = uint64_t;
using i32 = int32_t;
using i64 = int64_t;
using usize = size_t;

// An address in one address space. Distinct tags make it impossible to pass
// a guest-physical address where a host-physical one is expected.
template <class Tag>
struct Addr {
    u64 v = 0;

    constexpr Addr() = default;
    constexpr explicit Addr(u64 raw) : v(raw) {}

    constexpr u64 raw() const { return v; }
    constexpr Addr operator+(u64 off) const { return Addr(v + off); }
    constexpr Addr operator-(u64 off) const { return Addr(v - off); }
    constexpr u64 operator-(Addr o) const { return v - o.v; }
    constexpr Addr &operator+=(u64 off) { v += off; return *this; }
    constexpr bool operator==(const Addr &o) const { return v == o.v; }
    constexpr bool operator!=(const Addr &o) const { return v != o.v; }
    constexpr bool operator<(const Addr &o) const { return v < o.v; }
    constexpr bool operator<=(const Addr &o) const { return v <= o.v; }
    constexpr bool operator>(const Addr &o) const { return v > o.v; }
    constexpr bool operator>=(const Addr &o) const { return v >= o.v; }

    constexpr bool aligned(u64 a) const { return (v & (a - 1)) == 0; }
    constexpr Addr align_down(u64 a) const { return Addr(v & ~(a - 1)); }
    constexpr Addr align_up(u64 a) const { return Addr((v + a - 1) & ~(a - 1)); }
};

using PhysAddr = Addr<struct PhysTag>;   // host-physical
using VirtAddr = Addr<struct VirtTag>;   // host-virtual (Keel's own address space)
using GuestPhys = Addr<struct GpaTag>;   // guest-physical

inline constexpr u64 PAGE_SIZE = 4096;
inline constexpr unsigned PAGE_SHIFT = 12;
inline constexpr u64 KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

constexpr u64 align_down(u64 v, u64 a) { return v & ~(a - 1); }
constexpr u64 align_up(u64 v, u64 a) { return (v + a - 1) & ~(a - 1); }
constexpr bool is_pow2(u64 v) { return v && !(v & (v - 1)); }

template <class T> constexpr T min(T a, T b) { return a < b ? a : b; }
template <class T> constexpr T max(T a, T b) { return a > b ? a : b; }
