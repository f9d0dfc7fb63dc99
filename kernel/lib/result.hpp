// Errors as values: no exceptions in Keel.
#pragma once

#include "kernel/lib/types.hpp"

enum class Err : u8 {
    none = 0,
    no_memory,      // the frame allocator (or a table) is exhausted
    invalid,        // malformed input (bad table, bad tag, bad argument)
    bad_checksum,   // a firmware table failed its checksum
    not_found,      // something asked for is absent
    exists,         // a mapping or object is already there
    unsupported,    // the hardware or format cannot do it
    range,          // out of bounds
    busy,           // a queue or table is full for now: retry later
    timeout,        // a bounded wait ran out
};

const char *err_name(Err e);

// A value or an error. [[nodiscard]] so that errors cannot be dropped silently.
template <class T>
class [[nodiscard]] Result {
public:
    constexpr Result(T v) : val_(v), err_(Err::none) {}
    constexpr Result(Err e) : val_(), err_(e) {}

    constexpr bool ok() const { return err_ == Err::none; }
    constexpr explicit operator bool() const { return ok(); }
    constexpr Err error() const { return err_; }
    constexpr const T &value() const { return val_; }
    constexpr T &value() { return val_; }
    constexpr const T &operator*() const { return val_; }
    constexpr const T *operator->() const { return &val_; }

private:
    T val_;
    Err err_;
};

// Result without a value.
class [[nodiscard]] Status {
public:
    constexpr Status() : err_(Err::none) {}
    constexpr Status(Err e) : err_(e) {}
    constexpr bool ok() const { return err_ == Err::none; }
    constexpr explicit operator bool() const { return ok(); }
    constexpr Err error() const { return err_; }

private:
    Err err_;
};

#define KEEL_TRY(expr)                                  \
    do {                                                \
        auto keel_try_r_ = (expr);                      \
        if (!keel_try_r_.ok()) return keel_try_r_.error(); \
    } while (0)
