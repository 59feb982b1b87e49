// The replay decisions of backend/command_log.h: a step equal to a recorded
// one replays it, one with the same ops but other arguments updates it, a
// shape of step is recorded the second time it is seen (never the first),
// several shapes keep their own recordings, and the least recently used one
// is replaced; without updates in place, steps with other arguments keep
// recordings of their own.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backend/command_log.h"

namespace ekv {
namespace {

struct Cmd {
    uint64_t op;
    int64_t arg;
};

CommandLog log_of(const std::vector<Cmd>& cmds) {
    CommandLog log;
    for (const Cmd& c : cmds) {
        log.begin(c.op);
        log.append_value(c.arg);
    }
    return log;
}

// One decision, and what a backend does after it (store on Record/Update).
ReplayDecision step(ReplayCache& cache, const CommandLog& log) {
    const ReplayDecision d = cache.decide(log);
    if (d.action == ReplayAction::Record || d.action == ReplayAction::Update) cache.store(d.slot, log);
    return d;
}

TEST(CommandLog, ComparesOpsAndArguments) {
    const CommandLog a = log_of({{1, 10}, {2, 20}});
    EXPECT_TRUE(a.same_as(log_of({{1, 10}, {2, 20}})));
    EXPECT_FALSE(a.same_as(log_of({{1, 10}, {2, 21}})));  // an argument
    EXPECT_TRUE(a.same_ops_as(log_of({{1, 10}, {2, 21}})));
    EXPECT_FALSE(a.same_ops_as(log_of({{2, 10}, {1, 20}})));  // the order
    EXPECT_FALSE(a.same_ops_as(log_of({{1, 10}})));          // a missing op
    EXPECT_EQ(a.ops_hash(), log_of({{1, 99}, {2, 98}}).ops_hash());
    EXPECT_NE(a.ops_hash(), log_of({{2, 10}, {1, 20}}).ops_hash());
    EXPECT_EQ(a.hash(), log_of({{1, 10}, {2, 20}}).hash());
    EXPECT_NE(a.hash(), log_of({{1, 10}, {2, 21}}).hash()) << "the arguments count";
    // Argument bytes stay with their command: moving a byte to the next
    // command is another log even though the concatenated arguments match.
    CommandLog x, y;
    x.begin(1);
    x.append_value(uint8_t{5});
    x.begin(2);
    y.begin(1);
    y.begin(2);
    y.append_value(uint8_t{5});
    EXPECT_FALSE(x.same_as(y));
}

TEST(ReplayCache, RecordsOnSecondSightThenReplays) {
    ReplayCache cache(4, 16);
    const CommandLog decode = log_of({{1, 10}, {2, 20}, {3, 30}});
    EXPECT_EQ(step(cache, decode).action, ReplayAction::Direct);
    const ReplayDecision rec = step(cache, decode);
    EXPECT_EQ(rec.action, ReplayAction::Record);
    for (int i = 0; i < 3; ++i) {
        const ReplayDecision d = step(cache, decode);
        EXPECT_EQ(d.action, ReplayAction::Replay);
        EXPECT_EQ(d.slot, rec.slot);
    }
}

TEST(ReplayCache, ChangedArgumentUpdatesChangedOpRecordsAnew) {
    ReplayCache cache(4, 16);
    const CommandLog a = log_of({{1, 10}, {2, 20}});
    step(cache, a);
    const int slot = step(cache, a).slot;
    // A cache row that moved: same ops, another address.
    const CommandLog moved = log_of({{1, 10}, {2, 24}});
    ReplayDecision d = step(cache, moved);
    EXPECT_EQ(d.action, ReplayAction::Update);
    EXPECT_EQ(d.slot, slot);
    EXPECT_EQ(step(cache, moved).action, ReplayAction::Replay);
    EXPECT_EQ(step(cache, a).action, ReplayAction::Update) << "the slot now holds `moved`";
    // Another op sequence (a KIVI group boundary adds a quantize op).
    const CommandLog boundary = log_of({{1, 10}, {7, 0}, {2, 20}});
    EXPECT_EQ(step(cache, boundary).action, ReplayAction::Direct);
    d = step(cache, boundary);
    EXPECT_EQ(d.action, ReplayAction::Record);
    EXPECT_NE(d.slot, slot) << "the common step keeps its recording";
    EXPECT_EQ(step(cache, a).action, ReplayAction::Replay);
    EXPECT_EQ(step(cache, boundary).action, ReplayAction::Replay);
}

TEST(ReplayCache, KeepsSeveralShapesAndReplacesTheLeastRecentlyUsed) {
    ReplayCache cache(2, 16);
    const CommandLog a = log_of({{1, 0}});
    const CommandLog b = log_of({{2, 0}});
    const CommandLog c = log_of({{3, 0}});
    for (const CommandLog* l : {&a, &a, &b, &b}) step(cache, *l);
    EXPECT_EQ(step(cache, a).action, ReplayAction::Replay);  // a used after b: b is the older
    EXPECT_EQ(step(cache, c).action, ReplayAction::Direct);
    const ReplayDecision d = step(cache, c);
    EXPECT_EQ(d.action, ReplayAction::Record);
    EXPECT_EQ(step(cache, a).action, ReplayAction::Replay) << "a was used last: kept";
    EXPECT_EQ(step(cache, c).action, ReplayAction::Replay);
    EXPECT_EQ(step(cache, b).action, ReplayAction::Direct) << "b was replaced and forgotten";
}

TEST(ReplayCache, OneOffStepsNeverRecordAndHistoryIsBounded) {
    ReplayCache cache(4, 3);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(step(cache, log_of({{static_cast<uint64_t>(100 + i), 0}})).action,
                                           ReplayAction::Direct);
    // Shape 100 fell out of the 3-step history: seen "first" again.
    EXPECT_EQ(step(cache, log_of({{100, 0}})).action, ReplayAction::Direct);
    EXPECT_EQ(step(cache, log_of({{109, 0}})).action, ReplayAction::Record);
    EXPECT_EQ(step(cache, CommandLog{}).action, ReplayAction::Direct) << "nothing to record";
}

TEST(ReplayCache, DroppedSlotRecordsAgain) {
    ReplayCache cache(4, 16);
    const CommandLog a = log_of({{1, 10}});
    step(cache, a);
    const int slot = step(cache, a).slot;
    ASSERT_TRUE(cache.holds(slot));
    cache.drop(slot);  // e.g. its graph failed to launch
    EXPECT_FALSE(cache.holds(slot));
    EXPECT_EQ(step(cache, a).action, ReplayAction::Direct);
    EXPECT_EQ(step(cache, a).action, ReplayAction::Record);
    cache.clear();
    EXPECT_EQ(step(cache, a).action, ReplayAction::Direct);
}

TEST(ReplayCache, WithoutUpdatesStepsTakingTurnsKeepARecordingEach) {
    ReplayCache cache(4, 16, /*update_in_place=*/false);
    // Two caches decoded in turn: the same ops on other buffers.
    const CommandLog a = log_of({{1, 10}, {2, 20}});
    const CommandLog b = log_of({{1, 11}, {2, 21}});
    EXPECT_EQ(step(cache, a).action, ReplayAction::Direct);
    EXPECT_EQ(step(cache, b).action, ReplayAction::Direct) << "new arguments: a shape of its own";
    const ReplayDecision ra = step(cache, a);
    const ReplayDecision rb = step(cache, b);
    EXPECT_EQ(ra.action, ReplayAction::Record);
    EXPECT_EQ(rb.action, ReplayAction::Record);
    EXPECT_NE(ra.slot, rb.slot);
    for (int i = 0; i < 3; ++i)
        for (const ReplayDecision& r : {ra, rb}) {
            const ReplayDecision d = step(cache, r.slot == ra.slot ? a : b);
            EXPECT_EQ(d.action, ReplayAction::Replay);
            EXPECT_EQ(d.slot, r.slot);
        }
    // Arguments that change every step (a growing cache) never record.
    for (int i = 0; i < 6; ++i) EXPECT_EQ(step(cache, log_of({{1, 100 + i}, {2, 20}})).action, ReplayAction::Direct);
    EXPECT_EQ(step(cache, a).action, ReplayAction::Replay) << "and evict nothing";
    // The default keeps one recording of the ops and updates it in turn.
    ReplayCache updating(4, 16);
    for (const CommandLog* l : {&a, &a, &b}) step(updating, *l);
    EXPECT_EQ(step(updating, a).action, ReplayAction::Update);
}

}  // namespace
}  // namespace ekv
