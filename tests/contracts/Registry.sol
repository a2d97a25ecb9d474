// SPDX-License-Identifier: BSD-3-Clause
pragma solidity ^0.8.20;

/// @title Test stand-in for the Infernet SDK v1 Registry, written from the v1 spec (section 1.1).
/// @notice An immutable address book of the v1 suite: five upper-case getters set once by the
///         constructor; no setters, no events, no fallback (unknown selectors revert with empty
///         data, as on the SDK's). The infernet-core tests use it to check that a node configured
///         with a v1 Registry refuses to start.
contract Registry {
    /// @notice The EIP712Coordinator.
    address public immutable COORDINATOR;
    /// @notice The Inbox (lazy subscriptions' results).
    address public immutable INBOX;
    /// @notice The Reader (batched subscription reads).
    address public immutable READER;
    /// @notice The Fee contract (protocol fee and its recipient).
    address public immutable FEE;
    /// @notice The WalletFactory (consumer and node payment wallets).
    address public immutable WALLET_FACTORY;

    constructor(address coordinator, address inbox, address reader, address fee, address walletFactory) {
        COORDINATOR = coordinator;
        INBOX = inbox;
        READER = reader;
        FEE = fee;
        WALLET_FACTORY = walletFactory;
    }
}
