// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./SessionQueue.sol";

/// For bench/gas.py only: the same queue, but answers are also kept in contract storage, as
/// Cortensor's session struct does, to show what that costs. Never deployed on a network.
contract StoredAnswersQueue is SessionQueue {
    mapping(uint256 => mapping(address => string)) public storedAnswers;

    constructor(
        INodeRegistry registry_,
        INodeStats stats_,
        ISessionPayment payment_,
        uint64 window_,
        uint64 taskTimeout_,
        uint32 answerTokens_,
        uint128 minPricePerToken_
    ) SessionQueue(registry_, stats_, payment_, window_, taskTimeout_, answerTokens_, minPricePerToken_) {}

    function _recordAnswer(uint256 taskId, address miner, string calldata answer) internal override {
        storedAnswers[taskId][miner] = answer;
        super._recordAnswer(taskId, miner, answer);
    }
}
