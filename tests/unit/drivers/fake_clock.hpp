// The clock of the drivers' bounded waits in the host unit tests
// (kernel/lib/device_io.hpp): time passes only when the driver pauses, STEP
// microseconds each time, so a wait that never ends runs out after a known
// number of polls.
#pragma once

#include "kernel/lib/device_io.hpp"

template <u64 START, u64 STEP>
class FakeClockT : public dev::Clock {
public:
    u64 now_us() override { return t; }
    void pause() override
    {
        t += step;
        pauses++;
    }
    u64 t = START;
    u64 step = STEP;
    u64 pauses = 0;
};
