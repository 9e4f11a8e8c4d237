// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// IAM + ACL: who may act (admin, oracles, miners), each miner's spec, and the user-task pool.
/// Pool: Registered -> Ephemeral (after `eligibilityThreshold` successful tasks) -> Reserved
/// (serving a user task) -> released back to Ephemeral; `removeAfterFailures` failures in a row
/// send an ephemeral node back to Registered.
contract NodeRegistry {
    enum Status { None, Registered, Ephemeral, Reserved }

    struct Node {
        Status status;
        uint8 tier;
        uint32 memoryMb;
        uint32 successes;
        uint16 failStreak;
        address payout;
        string appVersion;
    }

    address public admin;
    bool public openRegistration;
    uint32 public eligibilityThreshold;
    uint16 public removeAfterFailures;
    uint64 public leaderGrace;
    uint64 public lastLeaderActivity;
    address public leader;

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
    event NodeEphemeral(address indexed node, uint32 successes);
    event NodeReserved(address indexed node, bytes32 model);
    event NodeReleased(address indexed node);
    event NodeRemovedFromPool(address indexed node, uint16 failStreak);
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

    constructor(bool open, uint32 threshold, uint16 removeAfter, uint64 grace) {
        admin = msg.sender;
        openRegistration = open;
        eligibilityThreshold = threshold;
        removeAfterFailures = removeAfter;
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

    // ---- oracles ----

    function checkOracle(address who) external view {
        if (!isOracle[who]) revert NotOracle();
    }

    /// Called by modules on each leader action: reverts for anyone but the leader, and records
    /// that the leader is alive so the others do not take over.
    function touchLeader(address who) external onlyModule {
        if (who != leader) revert NotLeader();
        if (lastLeaderActivity != uint64(block.timestamp)) lastLeaderActivity = uint64(block.timestamp);
    }

    /// Any other oracle may lead once the leader has been silent for longer than the grace period.
    function takeover() external {
        if (!isOracle[msg.sender] || msg.sender == leader) revert NotOracle();
        uint64 until = lastLeaderActivity + leaderGrace;
        if (block.timestamp <= until) revert GraceNotOver(until);
        _setLeader(msg.sender);
    }

    // ---- pool (written by SessionQueue and NodeStats) ----

    function reserve(address node, bytes32 model) external onlyModule {
        Node storage n = nodes[node];
        if (n.status != Status.Ephemeral) revert NotInPool(node);
        if (!servesModel[node][model]) revert WrongModel(node);
        n.status = Status.Reserved;
        emit NodeReserved(node, model);
    }

    function release(address node) external onlyModule {
        Node storage n = nodes[node];
        if (n.status != Status.Reserved) revert BadState(uint8(n.status));
        n.status = Status.Ephemeral;
        emit NodeReleased(node);
    }

    function onResult(address node, bool ok) external onlyModule {
        Node storage n = nodes[node];
        if (n.status == Status.None) revert NotRegistered();
        if (ok) {
            n.failStreak = 0;
            n.successes += 1;
            if (n.status == Status.Registered && n.successes >= eligibilityThreshold) _makeEphemeral(node, n);
            return;
        }
        n.failStreak += 1;
        if (n.status == Status.Ephemeral && n.failStreak >= removeAfterFailures) {
            n.status = Status.Registered;
            n.successes = 0;
            emit NodeRemovedFromPool(node, n.failStreak);
        }
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
