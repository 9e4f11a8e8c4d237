// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// User sessions and their tasks. A task is Queued (price escrowed), Assigned to k pool miners
/// (reserved); each miner acks (it has the task) and precommits a commitment; once every active
/// miner has precommitted the Commit window opens and each reveals; the leader oracle validates
/// and passing miners are paid from the escrow. Each window closes as soon as every active miner
/// has acted, or at its deadline through `closeWindow`. Storage stays small on purpose (one slot
/// per miner, reused from task to task; the assignment kept as a 12-byte hash in the task's one
/// slot) because users pay for every task. A miner's assignment slot is also its reservation: a
/// node serves one user task at a time and is released when the task is validated or when it
/// misses a window.
///
/// No escrow is locked for good: a task the leader leaves where it is for `taskTimeout` past its
/// deadline (Queued and Committed: since it entered that state) can be refunded in full by its
/// owner, or by a miner it still reserves, which releases every miner it holds. Prices below the
/// admin's minimum per answer token (or below k wei, a share of 0) are refused, and so is a
/// redundancy above MAX_K, which also bounds every loop over a task's miners.
contract SessionQueue is RegistryUser {
    enum State { None, Queued, Assigned, Commit, Committed, Validated, Refunded }

    uint8 internal constant FREE = 0;
    uint8 internal constant ASSIGNED = 1;
    uint8 internal constant ACKED = 2;
    uint8 internal constant PRECOMMITTED = 3;
    uint8 internal constant COMMITTED = 4;
    uint8 public constant PASS_SCORE = 60;
    uint8 public constant NO_CONSENSUS = type(uint8).max;
    uint8 public constant MAX_K = 16;

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
        bytes12 minersHash;
    }

    struct Assignment {
        uint64 taskId;
        uint8 status;
        bytes23 commitment;
    }

    INodeStats public immutable stats;
    ISessionPayment public immutable payment;
    uint64 public immutable window;
    uint64 public immutable taskTimeout;
    uint32 public immutable answerTokens; // the answer budget a miner generates for a user task

    uint256 public sessionCount;
    uint64 public taskCount;
    uint128 public minPricePerToken; // in taskCount's slot: submitTask reads it for free
    mapping(uint256 => UserSession) public sessions;
    mapping(uint256 => Task) public tasks;
    mapping(address => Assignment) public assignments;

    event SessionOpened(uint256 indexed sessionId, address indexed owner, bytes32 model, uint8 precision, uint8 validationLevel, uint8 k, uint128 price);
    event SessionClosed(uint256 indexed sessionId);
    event TaskQueued(uint256 indexed taskId, uint256 indexed sessionId, string prompt);
    event TaskAssigned(uint256 indexed taskId, address[] miners, uint64 deadline);
    event TaskAcked(uint256 indexed taskId, address indexed miner);
    event TaskPrecommitted(uint256 indexed taskId, address indexed miner, bytes23 commitment);
    event TaskAnswer(uint256 indexed taskId, address indexed miner, string answer);
    event TaskPhase(uint256 indexed taskId, State state, uint64 deadline);
    event TaskMinerFailed(uint256 indexed taskId, address indexed miner, State stage);
    event TaskValidated(uint256 indexed taskId, address consensusMiner, uint8 passed);
    event TaskRefunded(uint256 indexed taskId, address indexed owner, uint256 amount);
    event MinPriceSet(uint128 weiPerToken);

    constructor(
        INodeRegistry registry_,
        INodeStats stats_,
        ISessionPayment payment_,
        uint64 window_,
        uint64 taskTimeout_,
        uint32 answerTokens_,
        uint128 minPricePerToken_
    ) RegistryUser(registry_) {
        if (answerTokens_ == 0) revert BadArgument();
        stats = stats_;
        payment = payment_;
        window = window_;
        taskTimeout = taskTimeout_;
        answerTokens = answerTokens_;
        minPricePerToken = minPricePerToken_;
        emit MinPriceSet(minPricePerToken_);
    }

    /// Admin: the least a session may pay each miner per answer token (applies to new tasks).
    function setMinPricePerToken(uint128 weiPerToken) external onlyAdmin {
        minPricePerToken = weiPerToken;
        emit MinPriceSet(weiPerToken);
    }

    /// The least `price` a session with redundancy k may offer: k shares of the minimum.
    function minPrice(uint8 k) public view returns (uint256) {
        uint256 share = uint256(minPricePerToken) * answerTokens;
        return uint256(k) * (share == 0 ? 1 : share);
    }

    function commitmentOf(uint256 taskId, address miner, bytes32 salt, string calldata answer) public pure returns (bytes23) {
        return bytes23(keccak256(abi.encode(taskId, miner, salt, keccak256(bytes(answer)))));
    }

    // ---- users ----

    function openSession(bytes32 model, uint8 precision, uint8 validationLevel, uint8 k, uint128 price)
        external
        returns (uint256 id)
    {
        if (k == 0 || k > MAX_K || precision > 1) revert BadArgument();
        _checkPrice(price, k);
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
        _checkPrice(us.price, us.k); // the minimum may have risen since the session opened
        taskId = ++taskCount;
        // While Queued, `deadline` is when the task was queued: the refund clock starts there.
        tasks[taskId] = Task(uint64(sessionId), State.Queued, uint64(block.timestamp), 0, 0, bytes12(0));
        payment.lock(msg.sender, taskId, us.price);
        emit TaskQueued(taskId, sessionId, prompt);
    }

    // ---- oracle ----

    function assign(uint256 taskId, address[] calldata miners) external onlyLeader {
        Task storage t = _inState(taskId, State.Queued);
        UserSession storage us = sessions[t.sessionId];
        if (miners.length != us.k) revert BadArgument();
        bytes32 model = us.model;
        uint256 perToken = type(uint256).max; // the price is read only if a miner has a floor
        for (uint256 i = 0; i < miners.length; i++) {
            Assignment storage a = assignments[miners[i]];
            if (a.status != FREE) revert NodeBusy(miners[i]); // also catches a miner listed twice
            uint256 floor = registry.checkPool(miners[i], model);
            if (floor != 0) {
                if (perToken == type(uint256).max) perToken = us.price / us.k / answerTokens;
                if (perToken < floor) revert PriceBelowFloor(miners[i]);
            }
            assignments[miners[i]] = Assignment(uint64(taskId), ASSIGNED, bytes23(0));
        }
        t.minersHash = _hashOf(miners);
        t.active = uint8(miners.length);
        _advance(taskId, t, State.Assigned);
        emit TaskAssigned(taskId, miners, t.deadline);
    }

    // ---- miners ----

    /// "I have the task and am working on it." Only the miner's own slot changes: a miner that
    /// has not precommitted by the deadline fails whether or not it acked.
    function ack(uint256 taskId) external {
        _assignmentOf(taskId, ASSIGNED).status = ACKED;
        emit TaskAcked(taskId, msg.sender);
    }

    /// A precommit implies the ack: a miner that answers quickly skips the ack transaction;
    /// `ack` stays for a slow miner to signal early that it is working on the task.
    function precommit(uint256 taskId, bytes23 commitment) external {
        Task storage t = _inState(taskId, State.Assigned);
        _beforeDeadline(t);
        Assignment storage a = assignments[msg.sender];
        if (a.taskId != taskId || a.status == FREE) revert NotSelected();
        if (a.status != ASSIGNED && a.status != ACKED) revert AlreadyActed();
        a.status = PRECOMMITTED;
        a.commitment = commitment;
        emit TaskPrecommitted(taskId, msg.sender, commitment);
        _acted(taskId, t, State.Commit);
    }

    function commit(uint256 taskId, string calldata answer, bytes32 salt) external {
        Task storage t = _inState(taskId, State.Commit);
        _beforeDeadline(t);
        Assignment storage a = _assignmentOf(taskId, PRECOMMITTED);
        if (a.commitment != commitmentOf(taskId, msg.sender, salt, answer)) revert HashMismatch();
        a.status = COMMITTED;
        _recordAnswer(taskId, msg.sender, answer);
        _acted(taskId, t, State.Committed);
    }

    // ---- oracle: deadlines and validation ----

    /// After a window's deadline: miners that did not act fail, are released, and are not paid.
    /// `miners` is the assignment, in order (checked against its hash).
    function closeWindow(uint256 taskId, address[] calldata miners) external onlyLeader {
        Task storage t = tasks[taskId];
        State phase = t.state;
        if (phase != State.Assigned && phase != State.Commit) revert BadState(uint8(phase));
        _afterDeadline(t);
        _checkMiners(t, miners);
        // Late in Assigned: not precommitted (acked or not). Late in Commit: not revealed.
        uint8 done = phase == State.Assigned ? PRECOMMITTED : COMMITTED;
        for (uint256 i = 0; i < miners.length; i++) {
            Assignment storage a = assignments[miners[i]];
            if (a.taskId != taskId || a.status == FREE || a.status >= done) continue;
            a.status = FREE;
            t.active -= 1;
            emit TaskMinerFailed(taskId, miners[i], phase);
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
        address[] memory paid = new address[](miners.length);
        uint256 passed = 0;
        address winner = address(0);
        for (uint256 i = 0; i < miners.length; i++) {
            Assignment storage a = assignments[miners[i]];
            if (a.taskId != taskId || a.status != COMMITTED) continue; // failed a window earlier
            a.status = FREE;
            bool ok = scores[i] >= PASS_SCORE;
            if (ok) {
                paid[passed++] = miners[i];
                if (i == consensus) winner = miners[i];
            }
            stats.record(miners[i], STAGE_USER_TASK, ok);
        }
        // The consensus answer must come from a miner that committed and passed.
        if (consensus != NO_CONSENSUS && winner == address(0)) revert BadArgument();
        assembly {
            mstore(paid, passed) // shrink to the miners that passed
        }
        payment.settle(taskId, us.owner, us.price, paid, share);
        t.state = State.Validated;
        emit TaskValidated(taskId, winner, uint8(passed));
    }

    /// The way out when the leader does not move a task on: `taskTimeout` after its deadline
    /// (Queued, Committed: after it entered that state) the owner, or a miner the task still
    /// reserves, refunds the whole price to the owner's deposit. Every miner still held is
    /// released with no result recorded: the delay was the leader's, not theirs. `miners` is
    /// the assignment in order (empty while Queued).
    function refund(uint256 taskId, address[] calldata miners) external {
        Task storage t = tasks[taskId];
        State state = t.state;
        if (state == State.None || state == State.Validated || state == State.Refunded) revert BadState(uint8(state));
        UserSession storage us = sessions[t.sessionId];
        if (msg.sender != us.owner && !_reserves(taskId, msg.sender)) revert NotAdmin();
        uint64 at = t.deadline + taskTimeout;
        if (block.timestamp <= at) revert NotYet(at);
        if (state != State.Queued) {
            _checkMiners(t, miners);
            for (uint256 i = 0; i < miners.length; i++) {
                if (_reserves(taskId, miners[i])) assignments[miners[i]].status = FREE;
            }
        }
        t.state = State.Refunded;
        t.deadline = 0;
        payment.settle(taskId, us.owner, us.price, new address[](0), 0);
        emit TaskPhase(taskId, State.Refunded, 0);
        emit TaskRefunded(taskId, us.owner, us.price);
    }

    /// The task a node is reserved for, or 0 when it is free.
    function reservedFor(address node) external view returns (uint256) {
        Assignment storage a = assignments[node];
        return a.status == FREE ? 0 : a.taskId;
    }

    // ---- internals ----

    /// Answers go to an event only; a comparison contract overrides this to store them.
    function _recordAnswer(uint256 taskId, address miner, string calldata answer) internal virtual {
        emit TaskAnswer(taskId, miner, answer);
    }

    function _acted(uint256 taskId, Task storage t, State next) internal {
        if (++t.acted == t.active) _advance(taskId, t, next);
    }

    function _advance(uint256 taskId, Task storage t, State next) internal {
        t.state = next;
        t.acted = 0;
        // Committed has no window: its `deadline` is when the leader's turn to validate began.
        t.deadline = uint64(block.timestamp) + (next == State.Committed ? 0 : window);
        emit TaskPhase(taskId, next, t.deadline);
    }

    function _checkPrice(uint128 price, uint8 k) internal view {
        uint256 least = minPrice(k);
        if (price < least) revert PriceTooLow(least);
    }

    function _reserves(uint256 taskId, address node) internal view returns (bool) {
        Assignment storage a = assignments[node];
        return a.taskId == taskId && a.status != FREE;
    }

    function _checkMiners(Task storage t, address[] calldata miners) internal view {
        if (_hashOf(miners) != t.minersHash) revert BadArgument();
    }

    function _hashOf(address[] calldata miners) internal pure returns (bytes12) {
        return bytes12(keccak256(abi.encodePacked(miners)));
    }

    function _inState(uint256 taskId, State want) internal view returns (Task storage t) {
        t = tasks[taskId];
        if (t.state != want) revert BadState(uint8(t.state));
    }

    function _assignmentOf(uint256 taskId, uint8 want) internal view returns (Assignment storage a) {
        a = assignments[msg.sender];
        if (a.taskId != taskId || a.status == FREE) revert NotSelected();
        if (a.status != want) revert AlreadyActed();
    }

    function _beforeDeadline(Task storage t) internal view {
        if (block.timestamp > t.deadline) revert DeadlinePassed();
    }

    function _afterDeadline(Task storage t) internal view {
        if (block.timestamp <= t.deadline) revert DeadlineNotPassed();
    }
}
