// drivers/nvme/'s SR-IOV admin side against the simulated controller (a primary
// with secondaries, as QEMU 7.2's nvme has them): Primary Controller
// Capabilities, the Secondary Controller List (malformed counts, several
// pages), Virtualization Management and Namespace Attachment with each of
// their errors, and bring_vf_online.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "drivers/nvme/commands.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/identify.hpp"
#include "tests/unit/drivers/nvme/sim_controller.hpp"

namespace nvme {
namespace {

using sim::FakeClock;
using sim::FakeDma;
using sim::SimController;

bool has(const char *why, const char *part) { return std::string(why).find(part) != std::string::npos; }

struct Sriov : ::testing::Test {
    FakeDma dma{1024};
    FakeClock clock;
    SimController sim{dma};
    std::unique_ptr<Controller> c;

    Sriov()
    {
        sim.add_namespace(1, 1024);
        sim.add_namespace(2, 1024);
        sim.ns[0].attached.clear();   // QEMU's nvme-ns detached=true: attached to nobody
        sim.ns[1].attached.clear();
        sim.qemu_sriov(2);
        sim.vfs_enabled = 2;
        c = std::make_unique<Controller>(sim, dma, clock);
        EXPECT_TRUE(c->enable().ok()) << c->why();
    }
    ~Sriov() override
    {
        c->release();
        EXPECT_EQ(dma.outstanding, 0);
        EXPECT_FALSE(sim.protocol_error);
    }

    // The admin commands sent since `from` (an index into sim.log).
    std::vector<Sqe> since(size_t from) { return std::vector<Sqe>(sim.log.begin() + long(from), sim.log.end()); }
    u16 sc() const { return c->last().status.sc(); }
    u8 sct() const { return c->last().status.sct(); }
};

TEST(SriovCommands, Encoding)
{
    auto s = cmd::virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VI, 0x1234, 7);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->opcode(), ADMIN_VIRT_MGMT);
    EXPECT_EQ(s->cdw10, 0x8u | 1u << 8 | 0x1234u << 16);
    EXPECT_EQ(s->cdw11, 7u);
    EXPECT_FALSE(cmd::virt_mgmt(0x10, 0, 1, 0).ok());
    EXPECT_FALSE(cmd::virt_mgmt(1, 8, 1, 0).ok());

    Sqe l = cmd::identify_secondary_list(0x81, 0x5000);
    EXPECT_EQ(l.cdw10, 0x15u | 0x81u << 16);
    EXPECT_EQ(l.prp1, 0x5000u);

    auto a = cmd::namespace_attachment(3, true, PhysAddr(0x7000));
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->opcode(), ADMIN_NS_ATTACHMENT);
    EXPECT_EQ(a->nsid, 3u);
    EXPECT_EQ(a->cdw10, u32(NS_DETACH));
    EXPECT_EQ(a->prp1, 0x7000u);
    EXPECT_FALSE(cmd::namespace_attachment(0, false, PhysAddr(0x7000)).ok());
    EXPECT_FALSE(cmd::namespace_attachment(0xffffffff, false, PhysAddr(0x7000)).ok());
    EXPECT_FALSE(cmd::namespace_attachment(1, false, PhysAddr(0x7008)).ok());

    std::vector<u8> page(MEM_PAGE, 0xee);
    const u16 ids[] = {2, 0x302};
    ASSERT_TRUE(cmd::controller_list(page.data(), ids, 2).ok());
    EXPECT_EQ(page[0], 2);
    EXPECT_EQ(page[1], 0);
    EXPECT_EQ(page[2], 2);
    EXPECT_EQ(page[4], 2);
    EXPECT_EQ(page[5], 3);
    EXPECT_EQ(page[6], 0);
    EXPECT_EQ(page[MEM_PAGE - 1], 0);
    EXPECT_FALSE(cmd::controller_list(page.data(), ids, 0).ok());
    EXPECT_FALSE(cmd::controller_list(page.data(), ids, CONTROLLER_LIST_MAX + 1).ok());
}

TEST(SriovParse, SecondaryListNeverReadsPastThePage)
{
    // An exact 4 KiB heap page: ASan sees any read beyond it.
    auto page = std::make_unique<u8[]>(MEM_PAGE);
    std::memset(page.get(), 0xff, MEM_PAGE);
    SecondaryController out[SECONDARY_LIST_MAX + 1];
    for (u32 count : {128u, 200u, 255u}) {
        page[0] = u8(count);
        auto n = parse_secondary_list(page.get(), out, SECONDARY_LIST_MAX + 1);
        EXPECT_FALSE(n.ok()) << count;
        EXPECT_EQ(n.error(), Err::invalid);
    }
    page[0] = 127;   // the last entry ends exactly at the page's end
    auto n = parse_secondary_list(page.get(), out, SECONDARY_LIST_MAX + 1);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 127u);
    EXPECT_EQ(out[126].scid, 0xffff);
    EXPECT_TRUE(out[126].online);
    // Fewer slots than entries: the count is still the page's.
    auto m = parse_secondary_list(page.get(), out, 3);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*m, 127u);
    EXPECT_EQ(parse_secondary_entry(page.get(), 127).scid, 0);   // out of range: an empty entry
}

TEST(SriovParse, PrimaryCapsAllocatedBeyondTotal)
{
    std::vector<u8> page(MEM_PAGE, 0);
    PrimaryCaps caps;
    page[32] = 4;     // VQFRT
    page[36] = 3;     // VQRFA
    page[40] = 1;     // VQRFAP
    EXPECT_TRUE(parse_primary_caps(page.data(), caps).ok());
    EXPECT_EQ(caps.vq_free(), 0u);
    page[40] = 2;
    EXPECT_FALSE(parse_primary_caps(page.data(), caps).ok());
    page[40] = 0;
    page[68] = 1;     // VIRFA 1 of VIFRT 0
    EXPECT_FALSE(parse_primary_caps(page.data(), caps).ok());
    // Totals near 2^32 do not wrap the check.
    std::memset(page.data() + 64, 0, 16);
    const u32 big = 0xffffffff;
    std::memcpy(page.data() + 32, &big, 4);
    std::memcpy(page.data() + 36, &big, 4);
    page[40] = 1;
    EXPECT_FALSE(parse_primary_caps(page.data(), caps).ok());
}

TEST_F(Sriov, PrimaryCapsAsQemu)
{
    auto caps = c->identify_primary_caps();
    ASSERT_TRUE(caps.ok()) << c->why();
    EXPECT_EQ(caps->cntlid, 1);
    EXPECT_EQ(caps->crt, CRT_VQ | CRT_VI);
    EXPECT_EQ(caps->vqfrt, 4u);
    EXPECT_EQ(caps->vqrfap, 0);
    EXPECT_EQ(caps->vqfrsm, 2);
    EXPECT_EQ(caps->vifrt, 2u);
    EXPECT_EQ(caps->virfap, 0);
    EXPECT_EQ(caps->vifrsm, 1);
    EXPECT_EQ(caps->vq_free(), 4u);
    EXPECT_EQ(caps->vi_free(), 2u);
    EXPECT_EQ(sim.log.back().cdw10, 0x14u);
}

TEST_F(Sriov, SecondaryList)
{
    SecondaryController l[4];
    auto n = c->secondary_list(l, 4);
    ASSERT_TRUE(n.ok()) << c->why();
    ASSERT_EQ(*n, 2u);
    EXPECT_EQ(l[0].scid, 2);
    EXPECT_EQ(l[0].pcid, 1);
    EXPECT_EQ(l[0].vfn, 1);
    EXPECT_FALSE(l[0].online);
    EXPECT_EQ(l[0].nvq, 0);
    EXPECT_EQ(l[1].scid, 3);
    EXPECT_EQ(l[1].vfn, 2);
    auto m = c->secondary_list(l, 4, 3);
    ASSERT_TRUE(m.ok());
    ASSERT_EQ(*m, 1u);
    EXPECT_EQ(l[0].scid, 3);
    EXPECT_EQ(sim.log.back().cdw10, 0x15u | 3u << 16);
}

TEST_F(Sriov, MalformedListCount)
{
    sim.secondary_list_count = 200;
    SecondaryController l[4];
    auto n = c->secondary_list(l, 4);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "200 entries")) << c->why();
    const size_t before = sim.log.size();
    Status s = c->bring_vf_online(1, 2, 1, 1);
    EXPECT_EQ(s.error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "200 entries")) << c->why();
    for (const Sqe &e : since(before)) EXPECT_EQ(e.opcode(), ADMIN_IDENTIFY);   // nothing changed
    sim.secondary_list_count = 0;   // an empty list: no VF 1
    EXPECT_EQ(c->bring_vf_online(1, 2, 1, 1).error(), Err::not_found);
}

TEST_F(Sriov, HappyPath)
{
    const size_t before = sim.log.size();
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    const auto cmds = since(before);
    ASSERT_EQ(cmds.size(), 6u);
    EXPECT_EQ(cmds[0].cdw10, u32(CNS_PRIMARY_CTRL_CAPS));
    EXPECT_EQ(cmds[1].cdw10, u32(CNS_SECONDARY_CTRL_LIST));
    EXPECT_EQ(cmds[2].opcode(), ADMIN_VIRT_MGMT);
    EXPECT_EQ(cmds[2].cdw10, 8u | 0u << 8 | 2u << 16);   // assign VQ to controller 2
    EXPECT_EQ(cmds[2].cdw11, 2u);
    EXPECT_EQ(cmds[3].cdw10, 8u | 1u << 8 | 2u << 16);   // assign VI
    EXPECT_EQ(cmds[3].cdw11, 1u);
    EXPECT_EQ(cmds[4].cdw10, 9u | 0u << 8 | 2u << 16);   // online, RT 0
    EXPECT_EQ(cmds[5].opcode(), ADMIN_NS_ATTACHMENT);
    EXPECT_EQ(cmds[5].nsid, 1u);
    EXPECT_EQ(cmds[5].cdw10, 0u);

    const sim::Secondary &s = sim.secondaries[0];
    EXPECT_TRUE(s.online);
    EXPECT_EQ(s.nvq, 2);
    EXPECT_EQ(s.nvi, 1);
    EXPECT_EQ(sim.ns[0].attached, std::vector<u16>{2});

    ASSERT_TRUE(c->bring_vf_online(2, 2, 1, 2).ok()) << c->why();
    EXPECT_TRUE(sim.secondaries[1].online);
    EXPECT_EQ(sim.ns[1].attached, std::vector<u16>{3});
    auto caps = c->identify_primary_caps();
    ASSERT_TRUE(caps.ok());
    EXPECT_EQ(caps->vqrfa, 4u);
    EXPECT_EQ(caps->vq_free(), 0u);
    EXPECT_EQ(caps->vi_free(), 0u);

    SecondaryController l[2];
    ASSERT_TRUE(c->secondary_list(l, 2).ok());
    EXPECT_TRUE(l[0].online && l[1].online);
    EXPECT_EQ(l[1].nvq, 2);
    EXPECT_EQ(l[1].nvi, 1);
}

TEST_F(Sriov, AgainOnAnOnlineVf)
{
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    const size_t before = sim.log.size();
    // Online with all the free resources already its own, the namespace attached.
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    const auto cmds = since(before);
    ASSERT_EQ(cmds.size(), 7u);
    EXPECT_EQ(cmds[2].cdw10, 7u | 2u << 16);   // offline first
    EXPECT_EQ(cmds[3].cdw10 & 0xf, 8u);
    EXPECT_EQ(cmds[5].cdw10 & 0xf, 9u);
    EXPECT_EQ(c->last().status.sc(), SC_NS_ALREADY_ATTACHED);   // skipped, not an error
    EXPECT_TRUE(sim.secondaries[0].online);
    EXPECT_EQ(sim.ns[0].attached, std::vector<u16>{2});
}

TEST_F(Sriov, NoNamespace)
{
    const size_t before = sim.log.size();
    ASSERT_TRUE(c->bring_vf_online(2, 2, 1, 0).ok()) << c->why();
    for (const Sqe &e : since(before)) EXPECT_NE(e.opcode(), ADMIN_NS_ATTACHMENT);
    EXPECT_TRUE(sim.secondaries[1].online);
    EXPECT_EQ(c->bring_vf_online(2, 2, 1, 0xffffffff).error(), Err::invalid);
}

TEST_F(Sriov, VfThatDoesNotExist)
{
    const size_t before = sim.log.size();
    Status s = c->bring_vf_online(3, 2, 1, 1);
    EXPECT_EQ(s.error(), Err::not_found);
    EXPECT_TRUE(has(c->why(), "VF 3: no secondary controller")) << c->why();
    EXPECT_TRUE(has(c->why(), "2 listed")) << c->why();
    s = c->bring_vf_online(0, 2, 1, 1);
    EXPECT_EQ(s.error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "VF 0")) << c->why();
    for (const Sqe &e : since(before)) EXPECT_EQ(e.opcode(), ADMIN_IDENTIFY);
}

TEST_F(Sriov, CountsCheckedBeforeAnythingChanges)
{
    const size_t before = sim.log.size();
    EXPECT_EQ(c->bring_vf_online(1, 1, 1, 1).error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "VF 1: 1 VQ resources asked, a secondary needs at least 2")) << c->why();
    EXPECT_EQ(c->bring_vf_online(1, 2, 0, 1).error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "0 VI resources")) << c->why();
    EXPECT_EQ(c->bring_vf_online(1, 3, 1, 1).error(), Err::range);
    EXPECT_TRUE(has(c->why(), "at most 2 per secondary")) << c->why();
    EXPECT_EQ(c->bring_vf_online(1, 2, 2, 1).error(), Err::range);
    for (const Sqe &e : since(before)) EXPECT_EQ(e.opcode(), ADMIN_IDENTIFY);
}

TEST_F(Sriov, ResourcesExhausted)
{
    sim.vqrfap = 2;   // the primary keeps two of the four flexible queues
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    const size_t before = sim.log.size();
    Status s = c->bring_vf_online(2, 2, 1, 2);
    EXPECT_EQ(s.error(), Err::no_memory);
    EXPECT_TRUE(has(c->why(), "VF 2: 2 VQ resources asked, 0 free and 0 its own")) << c->why();
    for (const Sqe &e : since(before)) EXPECT_EQ(e.opcode(), ADMIN_IDENTIFY);
    EXPECT_FALSE(sim.secondaries[1].online);

    // The controller's own refusal, when the driver is not told (straight virt_mgmt).
    auto r = c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 3, 2);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(sc(), SC_INVALID_NUM_RESOURCES);
    EXPECT_TRUE(has(c->why(), "invalid number of controller resources")) << c->why();
}

TEST_F(Sriov, VirtMgmtErrors)
{
    // 0x1F: no such secondary (and the primary is not one).
    auto r = c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 9, 2);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(sct(), SCT_COMMAND_SPECIFIC);
    EXPECT_EQ(sc(), SC_INVALID_CONTROLLER_ID);
    EXPECT_TRUE(has(c->why(), "secondary assign of 2 VQ (controller 9)")) << c->why();
    EXPECT_TRUE(has(c->why(), "invalid controller identifier (sct 1 sc 0x1f)")) << c->why();
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ONLINE, VM_RT_VQ, 1, 0).ok());
    EXPECT_EQ(sc(), SC_INVALID_CONTROLLER_ID);

    // 0x22: a resource type that is neither VQ nor VI, whatever the action.
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ONLINE, 2, 2, 0).ok());
    EXPECT_EQ(sc(), SC_INVALID_RESOURCE_ID);

    // 0x21: one queue (a secondary needs two), or more than VQFRSM / VIFRSM.
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 2, 1).ok());
    EXPECT_EQ(sc(), SC_INVALID_NUM_RESOURCES);
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 2, 3).ok());
    EXPECT_EQ(sc(), SC_INVALID_NUM_RESOURCES);
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VI, 2, 2).ok());
    EXPECT_EQ(sc(), SC_INVALID_NUM_RESOURCES);

    // 0x20: online without resources; assign while online.
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ONLINE, VM_RT_VQ, 2, 0).ok());
    EXPECT_EQ(sc(), SC_INVALID_SECONDARY_STATE);
    auto g = c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 2, 2);
    ASSERT_TRUE(g.ok()) << c->why();
    EXPECT_EQ(*g, 2u);
    ASSERT_TRUE(c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VI, 2, 1).ok());
    ASSERT_TRUE(c->virt_mgmt(VM_ACT_SECONDARY_ONLINE, VM_RT_VI, 2, 0).ok());
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_SECONDARY_ASSIGN, VM_RT_VQ, 2, 2).ok());
    EXPECT_EQ(sc(), SC_INVALID_SECONDARY_STATE);
    EXPECT_TRUE(has(c->why(), "invalid secondary controller state")) << c->why();

    // An action the command does not have, and fields the builder refuses.
    EXPECT_FALSE(c->virt_mgmt(0x3, VM_RT_VQ, 2, 0).ok());
    EXPECT_EQ(sct(), SCT_GENERIC);
    EXPECT_EQ(sc(), SC_INVALID_FIELD);
    const size_t before = sim.log.size();
    EXPECT_EQ(c->virt_mgmt(0x10, 0, 2, 0).error(), Err::invalid);
    EXPECT_EQ(sim.log.size(), before);

}

TEST_F(Sriov, PrimaryFlexibleAllocation)
{
    auto r = c->virt_mgmt(VM_ACT_PRIMARY_FLEXIBLE, VM_RT_VQ, 1, 2);
    ASSERT_TRUE(r.ok()) << c->why();
    auto caps = c->identify_primary_caps();
    ASSERT_TRUE(caps.ok());
    EXPECT_EQ(caps->vqrfap, 2);
    EXPECT_EQ(caps->vq_free(), 2u);
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_PRIMARY_FLEXIBLE, VM_RT_VQ, 2, 2).ok());
    EXPECT_EQ(sc(), SC_INVALID_CONTROLLER_ID);
    EXPECT_FALSE(c->virt_mgmt(VM_ACT_PRIMARY_FLEXIBLE, VM_RT_VI, 1, 3).ok());
    EXPECT_EQ(sc(), SC_INVALID_NUM_RESOURCES);
}

TEST_F(Sriov, CapsInconsistent)
{
    sim.vqrfap = 5;   // of 4
    auto caps = c->identify_primary_caps();
    EXPECT_EQ(caps.error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "allocated beyond the totals")) << c->why();
    EXPECT_EQ(c->bring_vf_online(1, 2, 1, 1).error(), Err::invalid);
    EXPECT_TRUE(has(c->why(), "VF 1: primary controller capabilities")) << c->why();
}

TEST_F(Sriov, AttachErrors)
{
    // 0x118: already attached (attach_namespace reports it; bring_vf_online skips it).
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    Status s = c->attach_namespace(1, 2);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(sc(), SC_NS_ALREADY_ATTACHED);
    EXPECT_TRUE(has(c->why(), "namespace attach: failed: namespace already attached")) << c->why();

    // 0x119: a private namespace attached to another controller.
    Status p = c->bring_vf_online(2, 2, 1, 1);
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(sc(), SC_NS_IS_PRIVATE);
    EXPECT_TRUE(has(c->why(), "VF 2: namespace attach: failed: namespace is private")) << c->why();
    EXPECT_TRUE(sim.secondaries[1].online);   // online, without the namespace
    // Detached from VF 1, it attaches to VF 2.
    ASSERT_TRUE(c->detach_namespace(1, 2).ok()) << c->why();
    EXPECT_FALSE(c->detach_namespace(1, 2).ok());
    EXPECT_EQ(sc(), SC_NS_NOT_ATTACHED);
    ASSERT_TRUE(c->attach_namespace(1, 3).ok()) << c->why();
    // A shared namespace goes to both.
    sim.ns[1].shared = true;
    ASSERT_TRUE(c->attach_namespace(2, 2).ok()) << c->why();
    ASSERT_TRUE(c->attach_namespace(2, 3).ok()) << c->why();
    EXPECT_EQ(sim.ns[1].attached, (std::vector<u16>{2, 3}));

    EXPECT_EQ(c->attach_namespace(0, 2).error(), Err::invalid);
}

TEST_F(Sriov, AttachBeforeTheVfExists)
{
    sim.vfs_enabled = 0;   // the PCI side has not enabled the VFs: no controller 2 yet
    Status s = c->bring_vf_online(1, 2, 1, 1);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(sct(), SCT_COMMAND_SPECIFIC);
    EXPECT_EQ(sc(), SC_CONTROLLER_LIST_INVALID);
    EXPECT_TRUE(has(c->why(), "VF 1: namespace attach: failed: controller list invalid")) << c->why();
    EXPECT_TRUE(sim.secondaries[0].online);
    sim.vfs_enabled = 1;
    ASSERT_TRUE(c->bring_vf_online(1, 2, 1, 1).ok()) << c->why();
    EXPECT_EQ(sim.ns[0].attached, std::vector<u16>{2});
}

TEST_F(Sriov, OnlyTheResourceTypesCrtOffers)
{
    sim.crt = CRT_VQ;
    const size_t before = sim.log.size();
    ASSERT_TRUE(c->bring_vf_online(1, 2, 0, 0).ok()) << c->why();
    u32 assigns = 0;
    for (const Sqe &e : since(before))
        if (e.opcode() == ADMIN_VIRT_MGMT && (e.cdw10 & 0xf) == VM_ACT_SECONDARY_ASSIGN) {
            assigns++;
            EXPECT_EQ(e.cdw10 >> 8 & 7, u32(VM_RT_VQ));
        }
    EXPECT_EQ(assigns, 1u);
    EXPECT_TRUE(sim.secondaries[0].online);
}

TEST_F(Sriov, ManyPagesOfSecondaries)
{
    sim.vqfrt = 2 * 300;
    sim.vifrt = 300;
    sim.add_secondaries(300);   // ids 2..301: three list pages
    sim.vfs_enabled = 300;
    sim.ns[0].shared = true;
    const size_t before = sim.log.size();
    ASSERT_TRUE(c->bring_vf_online(290, 2, 1, 1).ok()) << c->why();
    std::vector<u32> firsts;
    for (const Sqe &e : since(before))
        if (e.opcode() == ADMIN_IDENTIFY && u8(e.cdw10) == CNS_SECONDARY_CTRL_LIST) firsts.push_back(e.cdw10 >> 16);
    EXPECT_EQ(firsts, (std::vector<u32>{0, 129, 256}));
    EXPECT_TRUE(sim.secondary(291)->online);
    EXPECT_EQ(sim.ns[0].attached, std::vector<u16>{291});
    EXPECT_EQ(c->bring_vf_online(301, 2, 1, 1).error(), Err::not_found);
    EXPECT_TRUE(has(c->why(), "300 listed")) << c->why();
}

} // namespace
} // namespace nvme
