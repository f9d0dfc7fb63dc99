// The two halves together, as the kernel will use them: a GPT written onto a
// (simulated) NVMe namespace, read back through the driver by gpt::parse, and
// a partition found by name and read through the driver.
#include <gtest/gtest.h>

#include <cstring>

#include "drivers/nvme/controller.hpp"
#include "kernel/storage/device_name.hpp"
#include "kernel/storage/gpt.hpp"
#include "tests/unit/drivers/nvme/sim_controller.hpp"
#include "tests/unit/storage/gpt_image.hpp"

namespace {

using namespace nvme;

// A namespace as a gpt::BlockSource: one block per read, through a DMA page.
class NamespaceBlocks : public gpt::BlockSource {
public:
    NamespaceBlocks(Controller &c, const NamespaceInfo &ns, DmaPage page) : c_(c), ns_(ns), page_(page) {}
    u32 block_size() const override { return ns_.block_size; }
    u64 block_count() const override { return ns_.blocks; }
    Status read(u64 lba, u8 *dst) override
    {
        const DataBuffer b{&page_.pa, 1, 0, ns_.block_size};
        CmdResult r = c_.read(ns_, lba, 1, b);
        if (!r.ok()) return r.outcome == Outcome::refused ? r.why : Err::invalid;
        std::memcpy(dst, page_.va, ns_.block_size);
        return {};
    }

private:
    Controller &c_;
    const NamespaceInfo &ns_;
    DmaPage page_;
};

TEST(NvmeGpt, PartitionByNameOnANamespace)
{
    sim::FakeDma dma(4096);
    sim::FakeClock clock;
    sim::SimController s(dma);
    s.add_namespace(1, 2048);                        // 1 MiB of 512-byte blocks

    // The image, made the way tools make one, put onto the namespace's medium.
    gpt::test::Image img(512, 2048);
    img.write({{1, gpt::test::guid_of(gpt::test::LINUX_FS), gpt::test::guid_of("11111111-2222-3333-4444-555555555555"),
                40, 99, "boot"},
               {2, gpt::test::guid_of(gpt::test::LINUX_FS), gpt::test::guid_of("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
                100, 1999, "web"}});
    std::memcpy(img.block(100), "WEB-FIRST-BLOCK", 15);
    s.ns[0].data = img.d;

    Controller c(s, dma, clock);
    ASSERT_TRUE(c.enable().ok()) << c.why();
    ASSERT_TRUE(c.create_io_queues().ok()) << c.why();
    NamespaceInfo ns;
    ASSERT_TRUE(c.identify_namespace(1, ns).ok());

    auto page = dma.alloc_page();
    ASSERT_TRUE(page.ok());
    NamespaceBlocks dev(c, ns, *page);
    std::vector<u8> scratch(ns.block_size);
    static gpt::Table t;
    gpt::Report why;
    ASSERT_TRUE(gpt::parse(dev, scratch.data(), t, &why).ok()) << why.msg;
    EXPECT_EQ(t.n, 2u);

    DeviceName name;
    const char text[] = "gpt-name:web";
    ASSERT_EQ(parse_device_name(StrView{text, sizeof text - 1}, name), nullptr);
    auto p = gpt::by_name(t, name.name);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->index, 2u);                      // what nvme0n1p2 names
    u8 first[512];
    ASSERT_TRUE(dev.read((*p)->first_lba, first).ok());
    EXPECT_EQ(std::memcmp(first, "WEB-FIRST-BLOCK", 15), 0);

    dma.free_page(*page);
    c.release();
    EXPECT_EQ(dma.outstanding, 0);
}

} // namespace
