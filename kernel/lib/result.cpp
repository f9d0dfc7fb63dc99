#include "kernel/lib/result.hpp"

const char *err_name(Err e)
{
    switch (e) {
    case Err::none: return "none";
    case Err::no_memory: return "out of memory";
    case Err::invalid: return "invalid";
    case Err::bad_checksum: return "bad checksum";
    case Err::not_found: return "not found";
    case Err::exists: return "already exists";
    case Err::unsupported: return "unsupported";
    case Err::range: return "out of range";
    case Err::busy: return "busy";
    case Err::timeout: return "timed out";
    }
    return "?";
}
