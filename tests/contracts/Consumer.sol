// SPDX-License-Identifier: BSD-3-Clause
pragma solidity ^0.8.20;

import {Coordinator, IComputeReceiver, IDelegator} from "./Coordinator.sol";

/// @notice Receives deliveries from one Coordinator only.
abstract contract BaseConsumer is IComputeReceiver {
    Coordinator internal immutable COORDINATOR;

    error NotCoordinator();

    constructor(address coordinator) {
        COORDINATOR = Coordinator(coordinator);
    }

    /// @notice Called by the Coordinator with a node's result; forwards it to _receiveCompute.
    function rawReceiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof
    ) external {
        if (msg.sender != address(COORDINATOR)) {
            revert NotCoordinator();
        }
        _receiveCompute(subscriptionId, interval, redundancy, node, input, output, proof);
    }

    function _receiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof
    ) internal virtual;
}

/// @notice One-off requests: a subscription of one interval, active at once.
abstract contract CallbackConsumer is BaseConsumer {
    function _requestCompute(
        string memory containerId,
        bytes memory inputs,
        uint48 maxGasPrice,
        uint32 maxGasLimit,
        uint16 redundancy
    ) internal returns (uint32) {
        return COORDINATOR.createSubscription(containerId, inputs, maxGasPrice, maxGasLimit, 1, 0, redundancy);
    }
}

/// @notice Recurring subscriptions whose inputs the node reads with getContainerInputs.
abstract contract SubscriptionConsumer is BaseConsumer {
    function _createComputeSubscription(
        string memory containerId,
        uint48 maxGasPrice,
        uint32 maxGasLimit,
        uint32 frequency,
        uint32 period,
        uint16 redundancy
    ) internal returns (uint32) {
        return COORDINATOR.createSubscription(containerId, "", maxGasPrice, maxGasLimit, frequency, period, redundancy);
    }

    function _cancelComputeSubscription(uint32 subscriptionId) internal {
        COORDINATOR.cancelSubscription(subscriptionId);
    }

    /// @notice The inputs of a subscription's interval, read by nodes (off-chain) before they compute.
    function getContainerInputs(uint32 subscriptionId, uint32 interval, uint32 timestamp, address caller)
        external
        view
        virtual
        returns (bytes memory);
}

/// @notice Names the key allowed to sign delegated subscriptions for this contract.
abstract contract Delegator is IDelegator {
    address public signer;

    constructor(address signer_) {
        signer = signer_;
    }

    function _updateSigner(address signer_) internal {
        signer = signer_;
    }
}

/// @notice The test consumer: records every delivery. Test-only: its setters have no access control.
contract Consumer is CallbackConsumer, SubscriptionConsumer, Delegator {
    struct Delivery {
        uint32 subscriptionId;
        uint32 interval;
        uint16 redundancy;
        address node;
        bytes input;
        bytes output;
        bytes proof;
    }

    /// @notice Every delivery received, in order.
    Delivery[] public deliveries;

    /// @notice Gas burnt in each _receiveCompute (to make a delivery exceed its maxGasLimit).
    uint256 public gasBurn;

    bytes private fixedInputs;
    bool private hasFixedInputs;

    constructor(address coordinator, address signer_) BaseConsumer(coordinator) Delegator(signer_) {}

    function deliveryCount() external view returns (uint256) {
        return deliveries.length;
    }

    function getDelivery(uint256 index) external view returns (Delivery memory) {
        return deliveries[index];
    }

    /// @notice A one-off request (frequency 1, period 0).
    function requestCallback(
        string calldata containerId,
        bytes calldata inputs,
        uint48 maxGasPrice,
        uint32 maxGasLimit,
        uint16 redundancy
    ) external returns (uint32) {
        return _requestCompute(containerId, inputs, maxGasPrice, maxGasLimit, redundancy);
    }

    /// @notice A recurring subscription with empty on-chain inputs.
    function createRecurring(
        string calldata containerId,
        uint48 maxGasPrice,
        uint32 maxGasLimit,
        uint32 frequency,
        uint32 period,
        uint16 redundancy
    ) external returns (uint32) {
        return _createComputeSubscription(containerId, maxGasPrice, maxGasLimit, frequency, period, redundancy);
    }

    function cancel(uint32 subscriptionId) external {
        _cancelComputeSubscription(subscriptionId);
    }

    /// @notice abi.encode(subscriptionId, interval), unless setContainerInputs fixed the answer.
    function getContainerInputs(uint32 subscriptionId, uint32 interval, uint32, address)
        external
        view
        override
        returns (bytes memory)
    {
        if (hasFixedInputs) {
            return fixedInputs;
        }
        return abi.encode(subscriptionId, interval);
    }

    function setContainerInputs(bytes calldata inputs) external {
        fixedInputs = inputs;
        hasFixedInputs = true;
    }

    function updateSigner(address signer_) external {
        _updateSigner(signer_);
    }

    function setGasBurn(uint256 amount) external {
        gasBurn = amount;
    }

    function _receiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof
    ) internal override {
        uint256 stopAt = gasleft() - gasBurn;
        while (gasleft() > stopAt) {}
        deliveries.push(Delivery(subscriptionId, interval, redundancy, node, input, output, proof));
    }
}
