// 16550 UART on an I/O port: Keel's serial console.
#pragma once

#include "kernel/lib/types.hpp"

class Uart16550 {
public:
    enum class Reg : u16 { rbr = 0, thr = 0, ier = 1, fcr = 2, lcr = 3, mcr = 4, lsr = 5, scr = 7, dll = 0, dlm = 1 };

    // Program 115200 8N1; false if no UART answers at that port.
    bool init(u16 port);
    void write(const char *s, usize n);
    // A received byte, if one is waiting (never waits).
    bool read(u8 &c);
    u16 port() const { return port_; }

private:
    void out(Reg r, u8 v);
    u8 in(Reg r);
    void put(char c);

    u16 port_ = 0;
};
