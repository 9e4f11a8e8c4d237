// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Bumped whenever a contract's interface or semantics change; the client warns on a mismatch.
// 3: refunds and timeouts, minimum price and miners' price floors, present-miner list, two-step
// admin, oracle removal, delayed modules, wider counters.
uint16 constant PROTOCOL_VERSION = 3;

// Stages counted in NodeStats (uint8 so a counter key stays one byte).
uint8 constant STAGE_CREATE = 0;
uint8 constant STAGE_PREPARE = 1;
uint8 constant STAGE_PRECOMMIT = 2;
uint8 constant STAGE_COMMIT = 3;
uint8 constant STAGE_VALIDATE = 4;
uint8 constant STAGE_USER_TASK = 5;

error NotAdmin();
error NotModule();
error NotOracle();
error NotLeader();
error NotRegistered();
error AlreadyRegistered();
error NotAllowListed();
error BadState(uint8 have);
error DeadlinePassed();
error DeadlineNotPassed();
error NotSelected();
error AlreadyActed();
error HashMismatch();
error PingTooSoon(uint64 nextAllowed);
error NotInPool(address node);
error WrongModel(address node);
error NodeAway(address node);
error NodeBusy(address node);
error InCooldown(address node);
error NotEnoughMiners(uint256 available);
error GraceNotOver(uint64 until);
error NothingToWithdraw();
error InsufficientDeposit(uint256 have, uint256 need);
error TransferFailed();
error BadArgument();
error PriceTooLow(uint256 minimum);
error PriceBelowFloor(address node);
error NotYet(uint64 at);

interface INodeRegistry {
    function admin() external view returns (address);
    function isModule(address who) external view returns (bool);
    function isMiner(address who) external view returns (bool);
    function touchLeader(address who) external;
    function checkOracle(address who) external view;
    function checkPool(address node, bytes32 model) external view returns (uint256 floor);
    function onResult(address node, bool ok) external;
    function expel(address node) external;
    function payoutOf(address node) external view returns (address);
    function presentCount() external view returns (uint256);
    function presentAt(uint256 i) external view returns (address);
}

interface INodeStats {
    function record(address node, uint8 stage, bool ok) external;
}

interface ISessionPayment {
    function lock(address user, uint256 taskId, uint256 amount) external;
    function settle(uint256 taskId, address user, uint256 locked, address[] calldata paid, uint256 share) external;
}

/// Shared plumbing: contracts other than the registry ask it who is admin, module and leader.
abstract contract RegistryUser {
    INodeRegistry public immutable registry;

    constructor(INodeRegistry registry_) {
        registry = registry_;
    }

    modifier onlyModule() {
        if (!registry.isModule(msg.sender)) revert NotModule();
        _;
    }

    /// The registry's admin (rare settings such as SessionQueue's minimum price).
    modifier onlyAdmin() {
        if (msg.sender != registry.admin()) revert NotAdmin();
        _;
    }

    /// The leader oracle only; every such call also proves the leader is alive (see takeover).
    modifier onlyLeader() {
        registry.touchLeader(msg.sender);
        _;
    }

    function protocolVersion() external pure returns (uint16) {
        return PROTOCOL_VERSION;
    }
}
