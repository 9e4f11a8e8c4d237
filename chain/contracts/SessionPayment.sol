// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// Money: user deposits, escrow per task, node balances. Nodes pull their balance; it is sent to
/// the payout address they registered, never to whoever calls.
contract SessionPayment is RegistryUser {
    mapping(address => uint256) public deposits;
    mapping(uint256 => uint256) public escrow;
    mapping(address => uint256) public balances;

    event Deposited(address indexed user, uint256 amount, uint256 total);
    event DepositWithdrawn(address indexed user, uint256 amount);
    event Escrowed(uint256 indexed taskId, address indexed user, uint256 amount);
    event NodeCredited(uint256 indexed taskId, address indexed node, uint256 amount);
    event EscrowSettled(uint256 indexed taskId, address indexed user, uint256 refunded);
    event Withdrawn(address indexed node, address indexed payout, uint256 amount);

    constructor(INodeRegistry registry_) RegistryUser(registry_) {}

    function deposit() external payable {
        if (msg.value == 0) revert BadArgument();
        deposits[msg.sender] += msg.value;
        emit Deposited(msg.sender, msg.value, deposits[msg.sender]);
    }

    function withdrawDeposit(uint256 amount) external {
        uint256 have = deposits[msg.sender];
        if (amount == 0 || amount > have) revert InsufficientDeposit(have, amount);
        deposits[msg.sender] = have - amount;
        emit DepositWithdrawn(msg.sender, amount);
        _send(msg.sender, amount);
    }

    function lock(address user, uint256 taskId, uint256 amount) external onlyModule {
        uint256 have = deposits[user];
        if (have < amount) revert InsufficientDeposit(have, amount);
        deposits[user] = have - amount;
        escrow[taskId] = amount;
        emit Escrowed(taskId, user, amount);
    }

    function payNode(uint256 taskId, address node, uint256 amount) external onlyModule {
        escrow[taskId] -= amount;
        balances[node] += amount;
        emit NodeCredited(taskId, node, amount);
    }

    function settle(uint256 taskId, address user) external onlyModule {
        uint256 rest = escrow[taskId];
        escrow[taskId] = 0;
        if (rest > 0) deposits[user] += rest;
        emit EscrowSettled(taskId, user, rest);
    }

    /// Pull payment: the caller's own balance only, zeroed before the transfer.
    function withdraw() external {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        balances[msg.sender] = 0;
        address payout = registry.payoutOf(msg.sender);
        emit Withdrawn(msg.sender, payout, amount);
        _send(payout, amount);
    }

    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}
