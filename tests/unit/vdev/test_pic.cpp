#include <gtest/gtest.h>

#include "kernel/vdev/pic.hpp"

namespace {

u32 in(PicModel &p, u16 port)
{
    u32 v = 0xdead;
    EXPECT_TRUE(p.io(port, 1, true, v));
    return v;
}
void out(PicModel &p, u16 port, u32 v) { EXPECT_TRUE(p.io(port, 1, false, v)); }

TEST(Pic, StartsInitialisedAndMasked)
{
    PicModel pic;
    EXPECT_EQ(in(pic, 0x21), 0xffu);
    EXPECT_EQ(in(pic, 0xa1), 0xffu);
    EXPECT_EQ(pic.vector_base(0), 0x08);
    EXPECT_EQ(pic.vector_base(1), 0x70);
    EXPECT_FALSE(pic.initialising(0));
    EXPECT_EQ(in(pic, 0x20), 0u);   // IRR: nothing pending
    EXPECT_EQ(in(pic, 0xa0), 0u);
}

TEST(Pic, ImrReadsBackWhatWasWritten)
{
    PicModel pic;
    out(pic, 0x21, 0xa5);
    out(pic, 0xa1, 0x5a);
    EXPECT_EQ(in(pic, 0x21), 0xa5u);
    EXPECT_EQ(in(pic, 0xa1), 0x5au);
}

// What Linux's init_8259A and every BIOS do.
TEST(Pic, InitSequenceSetsVectorsAndThenTheMask)
{
    PicModel pic;
    out(pic, 0x21, 0xff);
    out(pic, 0x20, 0x11);   // ICW1: edge, cascade, ICW4 needed
    EXPECT_TRUE(pic.initialising(0));
    EXPECT_EQ(in(pic, 0x21), 0u);   // ICW1 clears the mask
    out(pic, 0x21, 0x30);   // ICW2: vectors 0x30-0x37
    out(pic, 0x21, 0x04);   // ICW3: slave on IR2
    out(pic, 0x21, 0x03);   // ICW4: 8086, auto-EOI
    EXPECT_FALSE(pic.initialising(0));
    EXPECT_EQ(pic.vector_base(0), 0x30);
    EXPECT_TRUE(pic.auto_eoi(0));
    out(pic, 0xa0, 0x11);
    out(pic, 0xa1, 0x38);
    out(pic, 0xa1, 0x02);
    out(pic, 0xa1, 0x01);
    EXPECT_EQ(pic.vector_base(1), 0x38);
    EXPECT_FALSE(pic.auto_eoi(1));
    out(pic, 0x21, 0xfb);   // OCW1 now, not an ICW
    out(pic, 0xa1, 0xff);
    EXPECT_EQ(in(pic, 0x21), 0xfbu);
    EXPECT_EQ(in(pic, 0xa1), 0xffu);
    EXPECT_EQ(pic.vector_base(0), 0x30);
}

TEST(Pic, SingleModeWithoutIcw4TakesOnlyIcw2)
{
    PicModel pic;
    out(pic, 0x20, 0x12);   // ICW1: single, no ICW4
    out(pic, 0x21, 0x48);
    EXPECT_FALSE(pic.initialising(0));
    out(pic, 0x21, 0x7e);   // the mask
    EXPECT_EQ(in(pic, 0x21), 0x7eu);
    EXPECT_EQ(pic.vector_base(0), 0x48);
}

TEST(Pic, Ocw3SelectsIrrOrIsrAndPollSaysNothing)
{
    PicModel pic;
    out(pic, 0x20, 0x0b);   // OCW3: read ISR
    EXPECT_EQ(in(pic, 0x20), 0u);
    out(pic, 0x20, 0x0a);   // OCW3: read IRR
    EXPECT_EQ(in(pic, 0x20), 0u);
    out(pic, 0x20, 0x0c);   // OCW3: poll
    EXPECT_EQ(in(pic, 0x20) & 0x80, 0u);
    out(pic, 0x20, 0x20);   // a non-specific EOI with nothing in service
    out(pic, 0x20, 0x62);   // a specific EOI
    EXPECT_EQ(in(pic, 0x21), 0xffu);   // the mask is untouched
}

TEST(Pic, ElcrKeepsOnlyItsLevelBits)
{
    PicModel pic;
    out(pic, 0x4d0, 0xff);
    out(pic, 0x4d1, 0xff);
    EXPECT_EQ(in(pic, 0x4d0), 0xf8u);
    EXPECT_EQ(in(pic, 0x4d1), 0xdeu);
}

TEST(Pic, OtherPortsAreNotItsOwn)
{
    PicModel pic;
    u32 v = 0;
    EXPECT_FALSE(pic.io(0x22, 1, true, v));
    EXPECT_FALSE(pic.io(0xa2, 1, false, v));
    EXPECT_FALSE(pic.io(0x4d2, 1, true, v));
}

} // namespace
