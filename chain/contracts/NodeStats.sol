// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// Liveness and merit: rate-limited pings, per-stage counters and points, success streaks and a
/// level. Final results (network-task validation, user tasks) are forwarded to the registry,
/// which moves nodes in and out of the user-task pool.
contract NodeStats is RegistryUser {
    /// Two slots: what a final outcome writes (the first seven fields, 26 bytes) and the pings.
    /// A user-task result writes only the first, as before; every counter is at least 32 bits
    /// (4 billion outcomes: over a thousand years at one task every 10 s), so a stats write
    /// cannot overflow and revert the payment path that records it.
    struct Stats {
        uint32 streak;
        uint32 bestStreak;
        uint32 successes;
        uint32 level;
        uint32 userTasks;
        uint32 userPoints;
        uint16 failStreak; // reset at removeAfterFailures (a uint16), so it cannot overflow
        uint32 pings;
        uint64 lastPing;
    }

    struct StageCount {
        uint32 count;
        uint32 points;
    }

    uint64 public immutable minPingInterval;
    uint32 public immutable levelStep;
    uint16 public immutable removeAfterFailures;

    mapping(address => Stats) public stats;
    mapping(address => mapping(uint8 => StageCount)) internal stageCounts;

    event Pinged(address indexed node, uint32 pings);
    event StageRecorded(address indexed node, uint8 indexed stage, bool ok, uint32 count, uint32 points);
    event LevelChanged(address indexed node, uint32 level);

    constructor(INodeRegistry registry_, uint64 minPingInterval_, uint32 levelStep_, uint16 removeAfter_)
        RegistryUser(registry_)
    {
        minPingInterval = minPingInterval_;
        removeAfterFailures = removeAfter_ == 0 ? 1 : removeAfter_;
        levelStep = levelStep_ == 0 ? 1 : levelStep_;
    }

    function ping() external {
        if (!registry.isMiner(msg.sender)) revert NotRegistered();
        Stats storage s = stats[msg.sender];
        uint64 next = s.lastPing + minPingInterval;
        if (s.pings > 0 && block.timestamp < next) revert PingTooSoon(next);
        s.lastPing = uint64(block.timestamp);
        s.pings = _inc(s.pings);
        emit Pinged(msg.sender, s.pings);
    }

    /// One stage outcome. Validation and user-task outcomes also count towards streak and level.
    /// User-task results are counted in the node's Stats slot (one storage write per result,
    /// because users pay for it); the other stages in their own counters.
    function record(address node, uint8 stage, bool ok) external onlyModule {
        Stats storage s = stats[node];
        if (stage == STAGE_USER_TASK) {
            s.userTasks = _inc(s.userTasks);
            if (ok) s.userPoints = _inc(s.userPoints);
            emit StageRecorded(node, stage, ok, s.userTasks, s.userPoints);
        } else {
            StageCount storage c = stageCounts[node][stage];
            c.count = _inc(c.count);
            if (ok) c.points = _inc(c.points);
            emit StageRecorded(node, stage, ok, c.count, c.points);
            if (stage < STAGE_VALIDATE && ok) return;
        }
        _final(node, s, ok, stage);
    }

    function stageCount(address node, uint8 stage) external view returns (uint32 count, uint32 points) {
        if (stage == STAGE_USER_TASK) return (stats[node].userTasks, stats[node].userPoints);
        StageCount storage c = stageCounts[node][stage];
        return (c.count, c.points);
    }

    /// The leader oracle's window rule (engine/validation.py `should_remove`): too many failed
    /// answers among a node's recent ones, not only in a row, take it out of the pool.
    function removeFromPool(address node) external onlyLeader {
        registry.expel(node);
    }

    /// Final outcomes: streak and level; network-task successes count towards the pool, and too
    /// many failures in a row take a node out of it. A user-task success touches only this slot.
    function _final(address node, Stats storage s, bool ok, uint8 stage) internal {
        if (!ok) {
            s.streak = 0;
            s.failStreak += 1;
            if (s.failStreak >= removeAfterFailures) {
                s.failStreak = 0;
                registry.expel(node);
            }
            return;
        }
        s.failStreak = 0;
        s.streak = _inc(s.streak);
        s.successes = _inc(s.successes);
        if (s.streak > s.bestStreak) s.bestStreak = s.streak;
        uint32 level = s.successes / levelStep;
        if (level != s.level) {
            s.level = level;
            emit LevelChanged(node, level);
        }
        if (stage == STAGE_VALIDATE) registry.onResult(node, true);
    }

    /// Counters saturate instead of reverting: a stats write is on the payment path
    /// (SessionQueue.validate and closeWindow), which must never fail because a node is busy.
    function _inc(uint32 x) internal pure returns (uint32) {
        unchecked {
            return x == type(uint32).max ? x : x + 1;
        }
    }
}
