// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// User sessions and their tasks. A task is Queued (price escrowed), Assigned to k pool miners
/// (reserved), each miner acks, precommits a commitment, then reveals; the leader oracle validates
/// and passing miners are paid from the escrow. Each window closes as soon as every active miner
/// has acted, or at its deadline through `closeWindow`. Storage stays small on purpose (one slot
/// per miner, the assignment kept as a hash) because users pay for every task.
contract SessionQueue is RegistryUser {
    enum State { None, Queued, Assigned, Precommit, Commit, Committed, Validated }

    uint8 internal constant ASSIGNED = 1;
    uint8 internal constant ACKED = 2;
    uint8 internal constant PRECOMMITTED = 3;
    uint8 internal constant COMMITTED = 4;
    uint8 internal constant FAILED = 5;
    uint8 public constant PASS_SCORE = 60;
    uint8 public constant NO_CONSENSUS = type(uint8).max;

    struct UserSession {
        address owner;
        uint8 precision; // 0 quantized, 1 full precision
        uint8 validationLevel;
        uint8 k;
        bool open;
        bytes32 model;
        uint128 price;
    }

    struct Task {
        uint64 sessionId;
        State state;
        uint64 deadline;
        uint8 active;
        uint8 acted;
        bytes32 minersHash;
    }

    struct Slot {
        uint8 status;
        bytes28 commitment;
    }

    INodeStats public immutable stats;
    ISessionPayment public immutable payment;
    uint64 public immutable window;

    uint256 public sessionCount;
    uint256 public taskCount;
    mapping(uint256 => UserSession) public sessions;
    mapping(uint256 => Task) public tasks;
    mapping(uint256 => mapping(address => Slot)) public slots;

    event SessionOpened(uint256 indexed sessionId, address indexed owner, bytes32 model, uint8 precision, uint8 validationLevel, uint8 k, uint128 price);
    event SessionClosed(uint256 indexed sessionId);
    event TaskQueued(uint256 indexed taskId, uint256 indexed sessionId, string prompt);
    event TaskAssigned(uint256 indexed taskId, address[] miners, uint64 deadline);
    event TaskAcked(uint256 indexed taskId, address indexed miner);
    event TaskPrecommitted(uint256 indexed taskId, address indexed miner, bytes28 commitment);
    event TaskAnswer(uint256 indexed taskId, address indexed miner, string answer);
    event TaskPhase(uint256 indexed taskId, State state, uint64 deadline);
    event TaskMinerFailed(uint256 indexed taskId, address indexed miner, State stage);
    event TaskValidated(uint256 indexed taskId, address consensusMiner, uint8 passed);

    constructor(INodeRegistry registry_, INodeStats stats_, ISessionPayment payment_, uint64 window_) RegistryUser(registry_) {
        stats = stats_;
        payment = payment_;
        window = window_;
    }

    function commitmentOf(uint256 taskId, address miner, bytes32 salt, string calldata answer) public pure returns (bytes28) {
        return bytes28(keccak256(abi.encode(taskId, miner, salt, keccak256(bytes(answer)))));
    }

    // ---- users ----

    function openSession(bytes32 model, uint8 precision, uint8 validationLevel, uint8 k, uint128 price)
        external
        returns (uint256 id)
    {
        if (k == 0 || precision > 1) revert BadArgument();
        id = ++sessionCount;
        sessions[id] = UserSession(msg.sender, precision, validationLevel, k, true, model, price);
        emit SessionOpened(id, msg.sender, model, precision, validationLevel, k, price);
    }

    function closeSession(uint256 sessionId) external {
        UserSession storage us = sessions[sessionId];
        if (us.owner != msg.sender) revert NotAdmin();
        if (!us.open) revert BadState(0);
        us.open = false;
        emit SessionClosed(sessionId);
    }

    /// The prompt lives only in calldata and the event; the price moves from deposit to escrow.
    function submitTask(uint256 sessionId, string calldata prompt) external returns (uint256 taskId) {
        UserSession storage us = sessions[sessionId];
        if (us.owner != msg.sender) revert NotAdmin();
        if (!us.open) revert BadState(0);
        taskId = ++taskCount;
        tasks[taskId] = Task(uint64(sessionId), State.Queued, 0, 0, 0, bytes32(0));
        payment.lock(msg.sender, taskId, us.price);
        emit TaskQueued(taskId, sessionId, prompt);
    }

    // ---- oracle ----

    function assign(uint256 taskId, address[] calldata miners) external onlyLeader {
        Task storage t = _inState(taskId, State.Queued);
        UserSession storage us = sessions[t.sessionId];
        if (miners.length != us.k) revert BadArgument();
        bytes32 model = us.model;
        for (uint256 i = 0; i < miners.length; i++) {
            Slot storage slot = slots[taskId][miners[i]];
            if (slot.status != 0) revert BadArgument();
            slot.status = ASSIGNED;
            registry.reserve(miners[i], model);
        }
        t.minersHash = keccak256(abi.encodePacked(miners));
        t.active = uint8(miners.length);
        _advance(taskId, t, State.Assigned);
        emit TaskAssigned(taskId, miners, t.deadline);
    }

    // ---- miners ----

    function ack(uint256 taskId) external {
        Task storage t = _inState(taskId, State.Assigned);
        _beforeDeadline(t);
        _slotOf(taskId, ASSIGNED).status = ACKED;
        emit TaskAcked(taskId, msg.sender);
        _acted(taskId, t, State.Precommit);
    }

    function precommit(uint256 taskId, bytes28 commitment) external {
        Task storage t = _inState(taskId, State.Precommit);
        _beforeDeadline(t);
        Slot storage slot = _slotOf(taskId, ACKED);
        slot.status = PRECOMMITTED;
        slot.commitment = commitment;
        emit TaskPrecommitted(taskId, msg.sender, commitment);
        _acted(taskId, t, State.Commit);
    }

    function commit(uint256 taskId, string calldata answer, bytes32 salt) external {
        Task storage t = _inState(taskId, State.Commit);
        _beforeDeadline(t);
        Slot storage slot = _slotOf(taskId, PRECOMMITTED);
        if (slot.commitment != commitmentOf(taskId, msg.sender, salt, answer)) revert HashMismatch();
        slot.status = COMMITTED;
        _recordAnswer(taskId, msg.sender, answer);
        _acted(taskId, t, State.Committed);
    }

    // ---- oracle: deadlines and validation ----

    /// After a window's deadline: miners that did not act fail, are released, and are not paid.
    function closeWindow(uint256 taskId, address[] calldata miners) external onlyLeader {
        Task storage t = tasks[taskId];
        State phase = t.state;
        if (phase != State.Assigned && phase != State.Precommit && phase != State.Commit) revert BadState(uint8(phase));
        _afterDeadline(t);
        _checkMiners(t, miners);
        uint8 waitingFor = uint8(phase) - uint8(State.Assigned) + ASSIGNED;
        for (uint256 i = 0; i < miners.length; i++) {
            Slot storage slot = slots[taskId][miners[i]];
            if (slot.status != waitingFor) continue;
            slot.status = FAILED;
            t.active -= 1;
            emit TaskMinerFailed(taskId, miners[i], phase);
            registry.release(miners[i]);
            stats.record(miners[i], STAGE_USER_TASK, false);
        }
        _advance(taskId, t, t.active == 0 ? State.Committed : State(uint8(phase) + 1));
    }

    /// Scores follow the assignment order. Passing committed miners share the price equally
    /// (price / k each); what failed or absent miners would have earned goes back to the user.
    function validate(uint256 taskId, address[] calldata miners, uint8[] calldata scores, uint8 consensus)
        external
        onlyLeader
    {
        Task storage t = _inState(taskId, State.Committed);
        _checkMiners(t, miners);
        if (scores.length != miners.length) revert BadArgument();
        UserSession storage us = sessions[t.sessionId];
        uint256 share = us.price / us.k;
        uint8 passed = 0;
        for (uint256 i = 0; i < miners.length; i++) {
            if (slots[taskId][miners[i]].status != COMMITTED) continue;
            bool ok = scores[i] >= PASS_SCORE;
            registry.release(miners[i]);
            if (ok) {
                passed++;
                payment.payNode(taskId, miners[i], share);
            }
            stats.record(miners[i], STAGE_USER_TASK, ok);
        }
        address winner = _consensusMiner(taskId, miners, scores, consensus);
        payment.settle(taskId, us.owner);
        t.state = State.Validated;
        emit TaskValidated(taskId, winner, passed);
    }

    // ---- internals ----

    /// Answers go to an event only; a comparison contract overrides this to store them.
    function _recordAnswer(uint256 taskId, address miner, string calldata answer) internal virtual {
        emit TaskAnswer(taskId, miner, answer);
    }

    function _consensusMiner(uint256 taskId, address[] calldata miners, uint8[] calldata scores, uint8 consensus)
        internal
        view
        returns (address)
    {
        if (consensus == NO_CONSENSUS) return address(0);
        if (consensus >= miners.length) revert BadArgument();
        address m = miners[consensus];
        if (slots[taskId][m].status != COMMITTED || scores[consensus] < PASS_SCORE) revert BadArgument();
        return m;
    }

    function _acted(uint256 taskId, Task storage t, State next) internal {
        if (++t.acted == t.active) _advance(taskId, t, next);
    }

    function _advance(uint256 taskId, Task storage t, State next) internal {
        t.state = next;
        t.acted = 0;
        t.deadline = next == State.Committed ? 0 : uint64(block.timestamp) + window;
        emit TaskPhase(taskId, next, t.deadline);
    }

    function _checkMiners(Task storage t, address[] calldata miners) internal view {
        if (keccak256(abi.encodePacked(miners)) != t.minersHash) revert BadArgument();
    }

    function _inState(uint256 taskId, State want) internal view returns (Task storage t) {
        t = tasks[taskId];
        if (t.state != want) revert BadState(uint8(t.state));
    }

    function _slotOf(uint256 taskId, uint8 want) internal view returns (Slot storage slot) {
        slot = slots[taskId][msg.sender];
        if (slot.status == 0 || slot.status == FAILED) revert NotSelected();
        if (slot.status != want) revert AlreadyActed();
    }

    function _beforeDeadline(Task storage t) internal view {
        if (block.timestamp > t.deadline) revert DeadlinePassed();
    }

    function _afterDeadline(Task storage t) internal view {
        if (block.timestamp <= t.deadline) revert DeadlineNotPassed();
    }
}
