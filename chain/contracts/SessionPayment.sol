// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./Common.sol";

/// Money: user deposits, escrow per task, node balances. Nodes pull their balance; it is sent to
/// the payout address they registered, never to whoever calls.
/// Escrow is accounted per task (locked and settled by task id, both in events; SessionQueue pays
/// a task out of what that task locked, at most) but stored as one running sum per user, in the
/// same slot as the deposit: a fresh storage slot per task would cost users 20,000 gas a task.
contract SessionPayment is RegistryUser {
    struct Account {
        uint128 deposit;
        uint128 escrowed;
    }

    mapping(address => Account) public accounts;
    mapping(address => uint256) public balances;

    event Deposited(address indexed user, uint256 amount, uint256 total);
    event DepositWithdrawn(address indexed user, uint256 amount);
    event Escrowed(uint256 indexed taskId, address indexed user, uint256 amount);
    event TaskSettled(uint256 indexed taskId, address indexed user, address[] paid, uint256 share, uint256 refunded);
    event Withdrawn(address indexed node, address indexed payout, uint256 amount);

    constructor(INodeRegistry registry_) RegistryUser(registry_) {}

    function deposit() external payable {
        if (msg.value == 0) revert BadArgument();
        Account storage a = accounts[msg.sender];
        a.deposit += uint128(msg.value);
        emit Deposited(msg.sender, msg.value, a.deposit);
    }

    function withdrawDeposit(uint256 amount) external {
        Account storage a = accounts[msg.sender];
        if (amount == 0 || amount > a.deposit) revert InsufficientDeposit(a.deposit, amount);
        a.deposit -= uint128(amount);
        emit DepositWithdrawn(msg.sender, amount);
        _send(msg.sender, amount);
    }

    function lock(address user, uint256 taskId, uint256 amount) external onlyModule {
        Account storage a = accounts[user];
        if (a.deposit < amount) revert InsufficientDeposit(a.deposit, amount);
        a.deposit -= uint128(amount);
        a.escrowed += uint128(amount);
        emit Escrowed(taskId, user, amount);
    }

    /// Pays `share` to each of `paid` out of what the task locked; the rest goes back to the user.
    function settle(uint256 taskId, address user, uint256 locked, address[] calldata paid, uint256 share)
        external
        onlyModule
    {
        uint256 spent = share * paid.length;
        if (spent > locked) revert BadArgument();
        for (uint256 i = 0; i < paid.length; i++) balances[paid[i]] += share;
        Account storage a = accounts[user];
        a.escrowed -= uint128(locked);
        a.deposit += uint128(locked - spent);
        emit TaskSettled(taskId, user, paid, share, locked - spent);
    }

    function depositOf(address user) external view returns (uint256) {
        return accounts[user].deposit;
    }

    function escrowedOf(address user) external view returns (uint256) {
        return accounts[user].escrowed;
    }

    /// Pull payment: the caller's own balance only, zeroed before the transfer.
    function withdraw() external {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        address payout = registry.payoutOf(msg.sender);
        if (payout == address(0)) revert NotRegistered(); // never burn a balance at address(0)
        balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, payout, amount);
        _send(payout, amount);
    }

    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}
