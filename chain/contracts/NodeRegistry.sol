// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// IAM + ACL: who may act (admin, oracles, miners), each miner's spec, and the user-task pool.
/// Pool: Registered -> Ephemeral (after `eligibilityThreshold` successful tasks); while it serves
/// a user task SessionQueue holds it reserved (one task at a time) and releases it when the task
/// is validated or the node misses a window. NodeStats counts failures in a row and, past its
/// limit, sends an ephemeral node back to Registered (`expel`), to earn its place again.
///
/// Admin powers are bounded (docs/CHAIN.md "Who is trusted with what"): the admin role moves
/// in two steps (transferAdmin, acceptAdmin); an oracle can be removed; after setup a new module
/// takes effect only `moduleDelay` seconds after a ModuleScheduled event every node can see,
/// so users can withdraw their deposits before a module that could move them is live.
contract NodeRegistry {
    enum Status { None, Registered, Ephemeral }

    struct Node {
        Status status;
        uint8 tier;
        uint32 memoryMb;
        uint32 successes;
        address payout;
        bool away; // paused by its operator: not selected, not assigned
        bool hasFloor; // priceFloor > 0: the pool check reads the second slot only then
        // Second slot: read by `checkPool` only for a node with a floor (a cold read each).
        uint32 presentIndex; // 1 + its place in `present`, 0 while away
        uint88 priceFloor; // wei per answer token this node accepts at least
        string appVersion;
    }

    // Packed so a leader check reads one slot: leader, lastLeaderActivity, leaderGrace.
    address public admin;
    bool public openRegistration;
    uint32 public eligibilityThreshold;
    address public leader;
    uint64 public lastLeaderActivity;
    uint32 public leaderGrace;
    address public pendingAdmin;
    bool public setupOpen; // while true the admin wires modules at once (deployment)
    uint32 public immutable moduleDelay;

    mapping(address => Node) internal nodes;
    mapping(address => mapping(bytes32 => bool)) public servesModel;
    mapping(address => bytes32[]) internal modelsOf;
    mapping(address => bool) public allowListed;
    mapping(address => bool) public isModule;
    mapping(address => bool) public isOracle;
    address[] internal miners;
    address[] internal present; // registered and not away: what selection samples (swap-and-pop)
    address[] public oracles;
    mapping(address => uint64) public moduleReadyAt; // scheduled module -> when it may go live

    event NodeRegistered(address indexed node, address payout, uint8 tier, uint32 memoryMb, string appVersion, bytes32[] models);
    event NodeSpecUpdated(address indexed node, uint8 tier, uint32 memoryMb, string appVersion, bytes32[] models);
    event PayoutChanged(address indexed node, address payout);
    event NodeAwayChanged(address indexed node, bool away);
    event NodeEphemeral(address indexed node, uint32 successes);
    event NodeRemovedFromPool(address indexed node);
    event OracleAdded(address indexed oracle);
    event LeaderChanged(address indexed previous, address indexed leader);
    event ModuleSet(address indexed module, bool enabled);
    event AllowListSet(address indexed node, bool allowed);
    event RegistrationModeSet(bool open);
    event PriceFloorSet(address indexed node, uint88 weiPerToken);
    event OracleRemoved(address indexed oracle);
    event AdminTransferStarted(address indexed admin, address indexed pending);
    event AdminChanged(address indexed previous, address indexed admin);
    event ModuleScheduled(address indexed module, uint64 readyAt);
    event SetupEnded();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin();
        _;
    }

    modifier onlyModule() {
        if (!isModule[msg.sender]) revert NotModule();
        _;
    }

    constructor(bool open, uint32 threshold, uint32 grace, uint32 moduleDelay_) {
        admin = msg.sender;
        openRegistration = open;
        eligibilityThreshold = threshold;
        leaderGrace = grace;
        moduleDelay = moduleDelay_;
        setupOpen = true;
    }

    function protocolVersion() external pure returns (uint16) {
        return PROTOCOL_VERSION;
    }

    // ---- admin ----

    /// Disabling is immediate (it only takes power away). Enabling is immediate only during
    /// setup; afterwards it schedules the module, which `activateModule` turns on once
    /// `moduleDelay` has passed since the ModuleScheduled event.
    function setModule(address module, bool enabled) external onlyAdmin {
        if (module == address(0)) revert BadArgument();
        if (!enabled || setupOpen) {
            moduleReadyAt[module] = 0;
            _setModule(module, enabled);
            return;
        }
        uint64 readyAt = uint64(block.timestamp) + moduleDelay;
        moduleReadyAt[module] = readyAt;
        emit ModuleScheduled(module, readyAt);
    }

    /// Anyone may switch on a scheduled module once its delay is over.
    function activateModule(address module) external {
        uint64 readyAt = moduleReadyAt[module];
        if (readyAt == 0) revert BadArgument();
        if (block.timestamp < readyAt) revert NotYet(readyAt);
        moduleReadyAt[module] = 0;
        _setModule(module, true);
    }

    /// Ends the deployment phase: from now on a new module waits `moduleDelay`.
    function endSetup() external onlyAdmin {
        setupOpen = false;
        emit SetupEnded();
    }

    /// Step one of an admin transfer; `acceptAdmin` by the new key completes it (a typo in the
    /// address cannot lose the role). Passing address(0) cancels a pending transfer.
    function transferAdmin(address next) external onlyAdmin {
        pendingAdmin = next;
        emit AdminTransferStarted(admin, next);
    }

    function acceptAdmin() external {
        if (msg.sender != pendingAdmin || msg.sender == address(0)) revert NotAdmin();
        emit AdminChanged(admin, msg.sender);
        admin = msg.sender;
        pendingAdmin = address(0);
    }

    function setAllowListed(address node, bool allowed) external onlyAdmin {
        allowListed[node] = allowed;
        emit AllowListSet(node, allowed);
    }

    function setOpenRegistration(bool open) external onlyAdmin {
        openRegistration = open;
        emit RegistrationModeSet(open);
    }

    /// The first oracle added leads; the others wait for it to stall (see takeover).
    function addOracle(address oracle) external onlyAdmin {
        if (isOracle[oracle] || oracle == address(0)) revert BadArgument();
        isOracle[oracle] = true;
        oracles.push(oracle);
        emit OracleAdded(oracle);
        if (leader == address(0)) _setLeader(oracle);
    }

    /// A lost or compromised oracle key: it can no longer take over. If it leads, the first
    /// remaining oracle leads instead (none left: the next addOracle leads).
    function removeOracle(address oracle) external onlyAdmin {
        if (!isOracle[oracle]) revert BadArgument();
        isOracle[oracle] = false;
        uint256 last = oracles.length - 1;
        for (uint256 i = 0; i <= last; i++) {
            if (oracles[i] != oracle) continue;
            oracles[i] = oracles[last];
            oracles.pop();
            break;
        }
        emit OracleRemoved(oracle);
        if (leader == oracle) _setLeader(oracles.length > 0 ? oracles[0] : address(0));
    }

    // ---- miners ----

    function register(
        uint8 tier,
        uint32 memoryMb,
        string calldata appVersion,
        bytes32[] calldata models,
        address payout
    ) external {
        if (nodes[msg.sender].status != Status.None) revert AlreadyRegistered();
        if (!openRegistration && !allowListed[msg.sender]) revert NotAllowListed();
        if (payout == address(0) || models.length == 0) revert BadArgument();
        Node storage n = nodes[msg.sender];
        n.status = Status.Registered;
        n.payout = payout;
        _setSpec(n, tier, memoryMb, appVersion, models);
        miners.push(msg.sender);
        _addPresent(msg.sender, n);
        emit NodeRegistered(msg.sender, payout, tier, memoryMb, appVersion, models);
        if (eligibilityThreshold == 0) _makeEphemeral(msg.sender, n);
    }

    function updateSpec(
        uint8 tier,
        uint32 memoryMb,
        string calldata appVersion,
        bytes32[] calldata models
    ) external {
        Node storage n = _node(msg.sender);
        if (models.length == 0) revert BadArgument();
        _setSpec(n, tier, memoryMb, appVersion, models);
        emit NodeSpecUpdated(msg.sender, tier, memoryMb, appVersion, models);
    }

    function setPayout(address payout) external {
        if (payout == address(0)) revert BadArgument();
        _node(msg.sender).payout = payout;
        emit PayoutChanged(msg.sender, payout);
    }

    /// A paused node steps out of selection and the user-task pool, keeping its status and
    /// successes, so the deadlines it would miss while paused are never held against it.
    function setAway(bool away) external {
        Node storage n = _node(msg.sender);
        if (n.away == away) return;
        n.away = away;
        if (away) _removePresent(n);
        else _addPresent(msg.sender, n);
        emit NodeAwayChanged(msg.sender, away);
    }

    /// The least this node accepts per answer token; the pool check refuses to assign it a task
    /// whose share pays less, so a node is never assigned work it would refuse.
    function setPriceFloor(uint88 weiPerToken) external {
        Node storage n = _node(msg.sender);
        n.priceFloor = weiPerToken;
        n.hasFloor = weiPerToken > 0;
        emit PriceFloorSet(msg.sender, weiPerToken);
    }

    // ---- oracles ----

    function checkOracle(address who) external view {
        if (!isOracle[who]) revert NotOracle();
    }

    /// Called by modules on each leader action: reverts for anyone but the leader, and records
    /// that the leader is alive so the others do not take over.
    function touchLeader(address who) external onlyModule {
        if (who != leader) revert NotLeader();
        // Refreshed at most every quarter grace period, which keeps this write out of most leader
        // transactions; a takeover then needs between 3/4 and all of the grace period of silence.
        if (block.timestamp >= lastLeaderActivity + leaderGrace / 4) lastLeaderActivity = uint64(block.timestamp);
    }

    /// Any other oracle may lead once the leader has been silent for longer than the grace period.
    function takeover() external {
        if (!isOracle[msg.sender] || msg.sender == leader) revert NotOracle();
        uint64 until = lastLeaderActivity + uint64(leaderGrace);
        if (block.timestamp <= until) revert GraceNotOver(until);
        _setLeader(msg.sender);
    }

    // ---- pool (written by SessionQueue and NodeStats) ----

    /// Reverts unless `node` is in the user-task pool and serves `model`; returns its price
    /// floor per token (0: none), which SessionQueue.assign compares with the task's price.
    function checkPool(address node, bytes32 model) external view returns (uint256 floor) {
        Node storage n = nodes[node];
        if (n.status != Status.Ephemeral) revert NotInPool(node);
        if (n.away) revert NodeAway(node);
        if (!servesModel[node][model]) revert WrongModel(node);
        if (n.hasFloor) floor = n.priceFloor;
    }

    /// A successful network task: counts towards the pool's eligibility threshold.
    function onResult(address node, bool ok) external onlyModule {
        Node storage n = nodes[node];
        if (n.status == Status.None) revert NotRegistered();
        if (!ok || n.status != Status.Registered) return;
        n.successes += 1;
        if (n.successes >= eligibilityThreshold) _makeEphemeral(node, n);
    }

    /// Too many failures in a row (NodeStats decides): out of the pool until it earns its place.
    function expel(address node) external onlyModule {
        Node storage n = nodes[node];
        if (n.status != Status.Ephemeral) return;
        n.status = Status.Registered;
        n.successes = 0;
        emit NodeRemovedFromPool(node);
    }

    // ---- views ----

    function isMiner(address who) external view returns (bool) {
        return nodes[who].status != Status.None;
    }

    function payoutOf(address node) external view returns (address) {
        return nodes[node].payout;
    }

    function nodeInfo(address node) external view returns (Node memory) {
        return nodes[node];
    }

    function modelsOfNode(address node) external view returns (bytes32[] memory) {
        return modelsOf[node];
    }

    function minerCount() external view returns (uint256) {
        return miners.length;
    }

    function minerAt(uint256 i) external view returns (address) {
        return miners[i];
    }

    /// Miners that are not away, in no particular order: what Cognitive.start samples.
    function presentCount() external view returns (uint256) {
        return present.length;
    }

    function presentAt(uint256 i) external view returns (address) {
        return present[i];
    }

    /// Up to `limit` present miners from `start`: one call per page off chain, whatever the
    /// number of registered (or away) miners.
    function presentMiners(uint256 start, uint256 limit) external view returns (address[] memory page) {
        uint256 end = start + limit;
        if (end > present.length) end = present.length;
        if (start >= end) return new address[](0);
        page = new address[](end - start);
        for (uint256 i = start; i < end; i++) page[i - start] = present[i];
    }

    function oracleCount() external view returns (uint256) {
        return oracles.length;
    }

    // ---- internals ----

    function _node(address who) internal view returns (Node storage n) {
        n = nodes[who];
        if (n.status == Status.None) revert NotRegistered();
    }

    function _setSpec(Node storage n, uint8 tier, uint32 memoryMb, string calldata appVersion, bytes32[] calldata models) internal {
        n.tier = tier;
        n.memoryMb = memoryMb;
        n.appVersion = appVersion;
        bytes32[] storage old = modelsOf[msg.sender];
        for (uint256 i = 0; i < old.length; i++) servesModel[msg.sender][old[i]] = false;
        modelsOf[msg.sender] = models;
        for (uint256 i = 0; i < models.length; i++) servesModel[msg.sender][models[i]] = true;
    }

    function _addPresent(address node, Node storage n) internal {
        present.push(node);
        n.presentIndex = uint32(present.length);
    }

    function _removePresent(Node storage n) internal {
        uint256 i = n.presentIndex - 1;
        uint256 last = present.length - 1;
        if (i != last) {
            address moved = present[last];
            present[i] = moved;
            nodes[moved].presentIndex = uint32(i + 1);
        }
        present.pop();
        n.presentIndex = 0;
    }

    function _setModule(address module, bool enabled) internal {
        isModule[module] = enabled;
        emit ModuleSet(module, enabled);
    }

    function _makeEphemeral(address node, Node storage n) internal {
        n.status = Status.Ephemeral;
        emit NodeEphemeral(node, n.successes);
    }

    function _setLeader(address next) internal {
        emit LeaderChanged(leader, next);
        leader = next;
        lastLeaderActivity = uint64(block.timestamp);
    }
}
