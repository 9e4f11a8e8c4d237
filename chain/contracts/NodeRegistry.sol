// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// IAM + ACL: who may act (admin, oracles, miners), each miner's spec, and the user-task pool.
/// Pool: Registered -> Ephemeral (after `eligibilityThreshold` successful tasks); while it serves
/// a user task SessionQueue holds it reserved (one task at a time) and releases it when the task
/// is validated or the node misses a window. NodeStats counts failures in a row and, past its
/// limit, sends an ephemeral node back to Registered (`expel`), to earn its place again.
contract NodeRegistry {
    enum Status { None, Registered, Ephemeral }

    struct Node {
        Status status;
        uint8 tier;
        uint32 memoryMb;
        uint32 successes;
        address payout;
        bool away; // paused by its operator: not selected, not assigned (same slot as payout)
        string appVersion;
    }

    // Packed so a leader check reads one slot: leader, lastLeaderActivity, leaderGrace.
    address public admin;
    bool public openRegistration;
    uint32 public eligibilityThreshold;
    address public leader;
    uint64 public lastLeaderActivity;
    uint32 public leaderGrace;

    mapping(address => Node) internal nodes;
    mapping(address => mapping(bytes32 => bool)) public servesModel;
    mapping(address => bytes32[]) internal modelsOf;
    mapping(address => bool) public allowListed;
    mapping(address => bool) public isModule;
    mapping(address => bool) public isOracle;
    address[] internal miners;
    address[] public oracles;

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

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin();
        _;
    }

    modifier onlyModule() {
        if (!isModule[msg.sender]) revert NotModule();
        _;
    }

    constructor(bool open, uint32 threshold, uint32 grace) {
        admin = msg.sender;
        openRegistration = open;
        eligibilityThreshold = threshold;
        leaderGrace = grace;
    }

    function protocolVersion() external pure returns (uint16) {
        return PROTOCOL_VERSION;
    }

    // ---- admin ----

    function setModule(address module, bool enabled) external onlyAdmin {
        isModule[module] = enabled;
        emit ModuleSet(module, enabled);
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
        emit NodeAwayChanged(msg.sender, away);
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

    /// Reverts unless `node` is in the user-task pool and serves `model` (SessionQueue.assign).
    function checkPool(address node, bytes32 model) external view {
        Node storage n = nodes[node];
        if (n.status != Status.Ephemeral) revert NotInPool(node);
        if (n.away) revert NodeAway(node);
        if (!servesModel[node][model]) revert WrongModel(node);
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

    /// One read for the on-chain selection: the i-th miner and whether it is away.
    function candidateAt(uint256 i) external view returns (address node, bool away) {
        node = miners[i];
        away = nodes[node].away;
    }

    function minerAt(uint256 i) external view returns (address) {
        return miners[i];
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
