// The guest UART and debug-exit devices (kernel/vdev/uart.cpp) on their own; through the exit
// path they are tested in guest/test_vm_exits.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernel/vdev/uart.hpp"

namespace {

TEST(UartModel, ClaimsOnlyItsEightPorts)
{
    std::vector<std::string> lines;
    auto sink = [](void *ctx, const char *l, usize n) { static_cast<std::vector<std::string> *>(ctx)->emplace_back(l, n); };
    UartModel u(0x2f8, sink, &lines);
    u32 v = 0;
    EXPECT_FALSE(u.io(0x2f7, 1, true, v));
    EXPECT_FALSE(u.io(0x300, 1, true, v));
    EXPECT_FALSE(u.io(0x3f8, 1, false, v));
    for (u16 port = 0x2f8; port < 0x300; port++) EXPECT_TRUE(u.io(port, 1, true, v));
    v = 'k';
    EXPECT_TRUE(u.io(0x2f8, 1, false, v));
    u.flush();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0], "k");
    // Modem status, MCR masked to 5 bits.
    EXPECT_TRUE(u.io(0x2fe, 1, true, v));
    EXPECT_EQ(v, 0xb0u);
    v = 0xff;
    EXPECT_TRUE(u.io(0x2fc, 1, false, v));
    EXPECT_TRUE(u.io(0x2fc, 1, true, v));
    EXPECT_EQ(v, 0x1fu);
}

TEST(UartDebugExit, WritesOfAnyWidthReadsFloat)
{
    GuestPlatform p;
    DebugExitModel d(0x501, p);
    u32 v = 7;
    EXPECT_FALSE(d.io(0x500, 4, false, v));
    EXPECT_FALSE(p.exit_requested);
    EXPECT_TRUE(d.io(0x501, 4, true, v));
    EXPECT_EQ(v, ~0u);
    EXPECT_FALSE(p.exit_requested);
    v = 0;
    EXPECT_TRUE(d.io(0x501, 4, false, v));
    EXPECT_TRUE(p.exit_requested);
    EXPECT_EQ(p.exit_code, 0u);
}

} // namespace
