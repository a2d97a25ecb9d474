// SPDX-License-Identifier: BSD-3-Clause
pragma solidity ^0.8.20;

/// @title The part of the Infernet SDK v1 Coordinator that the protocol probe reads (v1 spec sections 2.1, 9).
/// @notice NOT a v1 Coordinator: it has only `getSubscription(uint32)` (selector 0xa17b920b), which
///         returns a zeroed v1 Subscription, the static 11-field tuple
///         (address,uint32,uint32,uint32,uint16,bytes32,bool,address,uint256,address,address)
///         encoded inline as 352 bytes, as the real one does for an unknown id. Nothing is stored,
///         nothing else answers (no fallback). It lets the tests tell a v1 Registry and a v1
///         Coordinator apart from a seed-era (v0.1) one; it is to be replaced by the full v1 suite
///         when the node serves v1.
contract V1CoordinatorStub {
    /// @notice The v1 Subscription, field for field (v1 spec section 2.1).
    struct Subscription {
        address owner;
        uint32 activeAt;
        uint32 period;
        uint32 frequency;
        uint16 redundancy;
        bytes32 containerId;
        bool lazy;
        address verifier;
        uint256 paymentAmount;
        address paymentToken;
        address wallet;
    }

    /// @notice A zeroed Subscription, whatever the id (the real Coordinator's answer for an unknown id).
    function getSubscription(uint32) external pure returns (Subscription memory sub) {
        return sub;
    }
}
