// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// Network tasks: the Proof-of-Useful-Work state machine
/// Request -> Create -> Prepare -> Start -> Precommit -> Commit -> End.
/// Every step has a deadline; the leader oracle reassigns a late creator or preparer and closes
/// a late precommit or commit window. A window also closes as soon as every selected miner has
/// acted. Answers travel in calldata and events; storage keeps only a 23-byte commitment.
contract Cognitive is RegistryUser {
    enum State { None, Requested, Created, Prepared, Precommit, Commit, Committed, Ended }

    // Per-miner status inside one session.
    uint8 internal constant SELECTED = 1;
    uint8 internal constant PRECOMMITTED = 2;
    uint8 internal constant COMMITTED = 3;
    uint8 internal constant FAILED = 4;
    uint8 public constant PASS_SCORE = 60;
    // Candidates `start` looks at beyond the `count` it needs (those in cooldown are skipped):
    // its work is bounded by count + MAX_EXTRA_SCAN, however many miners register.
    uint256 public constant MAX_EXTRA_SCAN = 32;

    struct Session {
        State state;
        uint64 deadline;
        uint8 selected;
        uint8 acted;
        address creator;
        address preparer;
        bytes32 seed;
    }

    struct Slot {
        uint8 status;
        bytes23 commitment;
    }

    INodeStats public immutable stats;
    uint64 public immutable stepWindow;
    uint64 public immutable answerWindow;
    uint64 public immutable selectionCooldown;

    uint256 public sessionCount;
    mapping(uint256 => Session) public sessions;
    mapping(uint256 => mapping(address => Slot)) public slots;
    mapping(uint256 => address[]) internal selectedMiners;
    mapping(address => uint64) public lastSelectedAt;

    event SessionRequested(uint256 indexed id, bytes32 seed, address creator, address preparer, uint64 deadline);
    event TopicCreated(uint256 indexed id, address indexed creator, string topic);
    event ChallengePrepared(uint256 indexed id, address indexed preparer, string prompts);
    event RoleReassigned(uint256 indexed id, uint8 stage, address indexed late, address next, uint64 deadline);
    event SessionStarted(uint256 indexed id, address[] miners, uint64 deadline);
    event Precommitted(uint256 indexed id, address indexed miner, bytes23 commitment);
    event CommitOpened(uint256 indexed id, uint64 deadline);
    event AnswerRevealed(uint256 indexed id, address indexed miner, string answer);
    event WindowClosed(uint256 indexed id, uint8 stage, address[] late);
    event MinerScored(uint256 indexed id, address indexed miner, uint8 score, bool passed);
    event SessionEnded(uint256 indexed id);

    constructor(INodeRegistry registry_, INodeStats stats_, uint64 stepWindow_, uint64 answerWindow_, uint64 cooldown_)
        RegistryUser(registry_)
    {
        stats = stats_;
        stepWindow = stepWindow_;
        answerWindow = answerWindow_;
        selectionCooldown = cooldown_;
    }

    /// The commitment a miner precommits: binds session, miner, salt and answer.
    function commitmentOf(uint256 id, address miner, bytes32 salt, string calldata answer) public pure returns (bytes23) {
        return bytes23(keccak256(abi.encode(id, miner, salt, keccak256(bytes(answer)))));
    }

    function selected(uint256 id) external view returns (address[] memory) {
        return selectedMiners[id];
    }

    // ---- Request, Create, Prepare ----

    function request(bytes32 seed, address creator, address preparer) external onlyLeader returns (uint256 id) {
        if (!registry.isMiner(creator) || !registry.isMiner(preparer)) revert NotRegistered();
        id = ++sessionCount;
        uint64 deadline = uint64(block.timestamp) + stepWindow;
        sessions[id] = Session(State.Requested, deadline, 0, 0, creator, preparer, seed);
        emit SessionRequested(id, seed, creator, preparer, deadline);
    }

    function create(uint256 id, string calldata topic) external {
        Session storage s = _inState(id, State.Requested);
        if (msg.sender != s.creator) revert NotSelected();
        _beforeDeadline(s);
        s.state = State.Created;
        s.deadline = uint64(block.timestamp) + stepWindow;
        emit TopicCreated(id, msg.sender, topic);
        stats.record(msg.sender, STAGE_CREATE, true);
    }

    function prepare(uint256 id, string calldata prompts) external {
        Session storage s = _inState(id, State.Created);
        if (msg.sender != s.preparer) revert NotSelected();
        _beforeDeadline(s);
        s.state = State.Prepared;
        emit ChallengePrepared(id, msg.sender, prompts);
        stats.record(msg.sender, STAGE_PREPARE, true);
    }

    /// After the creator's or preparer's deadline: the late miner gets a failure, another gets the job.
    function reassign(uint256 id, address next) external onlyLeader {
        Session storage s = sessions[id];
        if (s.state != State.Requested && s.state != State.Created) revert BadState(uint8(s.state));
        _afterDeadline(s);
        if (!registry.isMiner(next)) revert NotRegistered();
        bool creating = s.state == State.Requested;
        address late = creating ? s.creator : s.preparer;
        if (creating) s.creator = next;
        else s.preparer = next;
        s.deadline = uint64(block.timestamp) + stepWindow;
        uint8 stage = creating ? STAGE_CREATE : STAGE_PREPARE;
        emit RoleReassigned(id, stage, late, next, s.deadline);
        stats.record(late, stage, false);
    }

    // ---- Start: sampled selection with a cooldown ----

    /// Samples from the registry's present miners (away ones are not in that list), from a
    /// seeded offset, looking at no more than count + MAX_EXTRA_SCAN of them.
    function start(uint256 id, uint8 count) external onlyLeader {
        Session storage s = _inState(id, State.Prepared);
        if (count == 0) revert BadArgument();
        address[] storage chosen = selectedMiners[id];
        uint256 total = registry.presentCount();
        uint256 offset = total == 0 ? 0 : uint256(keccak256(abi.encode(s.seed, id, block.prevrandao))) % total;
        uint256 scan = uint256(count) + MAX_EXTRA_SCAN;
        if (scan > total) scan = total;
        for (uint256 i = 0; i < scan && chosen.length < count; i++) {
            address m = registry.presentAt((offset + i) % total);
            uint64 last = lastSelectedAt[m];
            if (last != 0 && last + selectionCooldown > block.timestamp) continue;
            lastSelectedAt[m] = uint64(block.timestamp);
            slots[id][m].status = SELECTED;
            chosen.push(m);
        }
        if (chosen.length < count) revert NotEnoughMiners(chosen.length);
        s.selected = count;
        s.state = State.Precommit;
        s.deadline = uint64(block.timestamp) + answerWindow;
        emit SessionStarted(id, chosen, s.deadline);
    }

    // ---- Precommit, Commit ----

    function precommit(uint256 id, bytes23 commitment) external {
        Session storage s = _inState(id, State.Precommit);
        _beforeDeadline(s);
        Slot storage slot = _slotOf(id, SELECTED);
        slot.status = PRECOMMITTED;
        slot.commitment = commitment;
        emit Precommitted(id, msg.sender, commitment);
        stats.record(msg.sender, STAGE_PRECOMMIT, true);
        if (++s.acted == s.selected) _openCommit(id, s);
    }

    function commit(uint256 id, string calldata answer, bytes32 salt) external {
        Session storage s = _inState(id, State.Commit);
        _beforeDeadline(s);
        Slot storage slot = _slotOf(id, PRECOMMITTED);
        if (slot.commitment != commitmentOf(id, msg.sender, salt, answer)) revert HashMismatch();
        slot.status = COMMITTED;
        emit AnswerRevealed(id, msg.sender, answer);
        stats.record(msg.sender, STAGE_COMMIT, true);
        if (++s.acted == s.selected) s.state = State.Committed;
    }

    /// After a window's deadline: miners that did not act fail that stage; the machine moves on.
    function closeWindow(uint256 id) external onlyLeader {
        Session storage s = sessions[id];
        bool precommitting = s.state == State.Precommit;
        if (!precommitting && s.state != State.Commit) revert BadState(uint8(s.state));
        _afterDeadline(s);
        uint8 waitingFor = precommitting ? SELECTED : PRECOMMITTED;
        uint8 stage = precommitting ? STAGE_PRECOMMIT : STAGE_COMMIT;
        address[] memory chosen = selectedMiners[id];
        address[] memory late = new address[](chosen.length - s.acted);
        uint256 n = 0;
        for (uint256 i = 0; i < chosen.length; i++) {
            Slot storage slot = slots[id][chosen[i]];
            if (slot.status != waitingFor) continue;
            slot.status = FAILED;
            late[n++] = chosen[i];
            stats.record(chosen[i], stage, false);
        }
        assembly {
            mstore(late, n) // only the miners that were late, no empty entries
        }
        emit WindowClosed(id, stage, late);
        s.selected = s.acted;
        if (precommitting && s.acted > 0) _openCommit(id, s);
        else s.state = State.Committed;
    }

    // ---- End ----

    /// Scores follow the order of `selected(id)`; miners that failed a window are skipped.
    function end(uint256 id, uint8[] calldata scores) external onlyLeader {
        _inState(id, State.Committed);
        address[] memory chosen = selectedMiners[id];
        if (scores.length != chosen.length) revert BadArgument();
        for (uint256 i = 0; i < chosen.length; i++) {
            if (slots[id][chosen[i]].status != COMMITTED) continue;
            bool passed = scores[i] >= PASS_SCORE;
            emit MinerScored(id, chosen[i], scores[i], passed);
            stats.record(chosen[i], STAGE_VALIDATE, passed);
        }
        sessions[id].state = State.Ended;
        emit SessionEnded(id);
    }

    // ---- internals ----

    function _openCommit(uint256 id, Session storage s) internal {
        s.state = State.Commit;
        s.acted = 0;
        s.deadline = uint64(block.timestamp) + answerWindow;
        emit CommitOpened(id, s.deadline);
    }

    function _inState(uint256 id, State want) internal view returns (Session storage s) {
        s = sessions[id];
        if (s.state != want) revert BadState(uint8(s.state));
    }

    function _slotOf(uint256 id, uint8 want) internal view returns (Slot storage slot) {
        slot = slots[id][msg.sender];
        if (slot.status == 0 || slot.status == FAILED) revert NotSelected();
        if (slot.status != want) revert AlreadyActed();
    }

    function _beforeDeadline(Session storage s) internal view {
        if (block.timestamp > s.deadline) revert DeadlinePassed();
    }

    function _afterDeadline(Session storage s) internal view {
        if (block.timestamp <= s.deadline) revert DeadlineNotPassed();
    }
}
