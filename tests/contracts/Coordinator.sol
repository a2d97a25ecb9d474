// SPDX-License-Identifier: BSD-3-Clause
pragma solidity ^0.8.20;

/// @title Test Coordinator of the seed era (Infernet SDK v0.1.0 behaviour), written from the spec.
/// @notice Node manager + Coordinator + EIP-712 delegated subscriptions, for the real-chain tests
///         of infernet-core. Not for production: no access control beyond what the spec describes.

/// @notice What the Coordinator calls on a subscription owner to deliver a result.
interface IComputeReceiver {
    function rawReceiveCompute(
        uint32 subscriptionId,
        uint32 interval,
        uint16 redundancy,
        address node,
        bytes calldata input,
        bytes calldata output,
        bytes calldata proof
    ) external;
}

/// @notice What a subscription owner exposes to allow delegated (signed) subscriptions.
interface IDelegator {
    function signer() external view returns (address);
}

/// @notice Node registration: Inactive -> Registered -> (cooldown) -> Active.
contract Manager {
    enum NodeStatus {
        Inactive,
        Registered,
        Active
    }

    struct NodeInfo {
        NodeStatus status;
        uint32 cooldownStart;
    }

    /// @notice Seconds between registration and the earliest activation.
    uint32 public constant cooldown = 3600;

    /// @notice A node's status and the start of its registration cooldown.
    mapping(address => NodeInfo) public nodeInfo;

    event NodeRegistered(address indexed node, address indexed registerer, uint32 cooldownStart);
    event NodeActivated(address indexed node);
    event NodeDeactivated(address indexed node);

    error NodeNotActive();
    error NodeNotRegisterable(address node, uint8 status);
    error CooldownActive(uint32 cooldownStart);
    error NodeNotActivateable(uint8 status);

    modifier onlyActiveNode() {
        if (nodeInfo[msg.sender].status != NodeStatus.Active) {
            revert NodeNotActive();
        }
        _;
    }

    /// @notice Start the registration of `node` (anyone may call it).
    function registerNode(address node) external {
        NodeInfo storage info = nodeInfo[node];
        if (info.status != NodeStatus.Inactive) {
            revert NodeNotRegisterable(node, uint8(info.status));
        }
        uint32 start = uint32(block.timestamp);
        info.status = NodeStatus.Registered;
        info.cooldownStart = start;
        emit NodeRegistered(node, msg.sender, start);
    }

    /// @notice Activate the caller once its cooldown is over.
    function activateNode() external {
        NodeInfo storage info = nodeInfo[msg.sender];
        if (info.status != NodeStatus.Registered) {
            revert NodeNotActivateable(uint8(info.status));
        }
        if (block.timestamp < uint256(info.cooldownStart) + cooldown) {
            revert CooldownActive(info.cooldownStart);
        }
        info.status = NodeStatus.Active;
        info.cooldownStart = 0;
        emit NodeActivated(msg.sender);
    }

    /// @notice Forget the caller (whatever its status).
    function deactivateNode() external {
        delete nodeInfo[msg.sender];
        emit NodeDeactivated(msg.sender);
    }
}

/// @notice Subscriptions, deliveries and their checks.
contract Coordinator is Manager {
    struct Subscription {
        address owner;
        uint32 activeAt;
        uint32 period;
        uint32 frequency;
        uint16 redundancy;
        uint48 maxGasPrice;
        uint32 maxGasLimit;
        string containerId;
        bytes inputs;
    }

    /// @dev A delivery that passed checks 1 to 7 (kept in memory: the callback needs many stack slots).
    struct Delivery {
        uint32 subscriptionId;
        address owner;
        uint32 interval;
        uint16 count;
        uint32 maxGasLimit;
        uint256 overhead;
    }

    /// @notice Gas charged to every delivery on top of the consumer's callback.
    uint256 public constant DELIVERY_OVERHEAD_WEI = 56600;

    /// @notice The next unused subscription id (ids start at 1).
    uint32 public id = 1;

    mapping(uint32 => Subscription) public subscriptions;

    /// @notice Responses so far, keyed by keccak256(abi.encode(uint32 id, uint32 interval)).
    mapping(bytes32 => uint16) public redundancyCount;

    /// @notice Whether a node answered, keyed by keccak256(abi.encode(uint32 id, uint32 interval, address node)).
    mapping(bytes32 => bool) public nodeResponded;

    event SubscriptionCreated(uint32 indexed id);
    event SubscriptionCancelled(uint32 indexed id);
    event SubscriptionFulfilled(uint32 indexed id, address indexed node);

    error GasPriceExceeded();
    error GasLimitExceeded();
    error IntervalMismatch();
    error IntervalCompleted();
    error NodeRespondedAlready();
    error SubscriptionNotFound();
    error NotSubscriptionOwner();
    error SubscriptionCompleted();
    error SubscriptionNotActive();

    /// @notice Create a subscription owned by the caller, active one `period` from now.
    function createSubscription(
        string calldata containerId,
        bytes calldata inputs,
        uint48 maxGasPrice,
        uint32 maxGasLimit,
        uint32 frequency,
        uint32 period,
        uint16 redundancy
    ) external returns (uint32) {
        uint32 subscriptionId = id++;
        Subscription storage sub = subscriptions[subscriptionId];
        sub.owner = msg.sender;
        sub.activeAt = uint32(block.timestamp) + period;
        sub.period = period;
        sub.frequency = frequency;
        sub.redundancy = redundancy;
        sub.maxGasPrice = maxGasPrice;
        sub.maxGasLimit = maxGasLimit;
        sub.containerId = containerId;
        sub.inputs = inputs;
        emit SubscriptionCreated(subscriptionId);
        return subscriptionId;
    }

    /// @notice Delete a subscription; only its owner may.
    function cancelSubscription(uint32 subscriptionId) external {
        if (subscriptions[subscriptionId].owner != msg.sender) {
            revert NotSubscriptionOwner();
        }
        delete subscriptions[subscriptionId];
        emit SubscriptionCancelled(subscriptionId);
    }

    /// @notice The interval current now, for a subscription active at `activeAt`.
    function getSubscriptionInterval(uint32 activeAt, uint32 period) external view returns (uint32) {
        return _intervalAt(activeAt, period, block.timestamp);
    }

    /// @notice Test helper: the interval current at `timestamp` (the same code as deliveries use).
    function intervalAt(uint32 activeAt, uint32 period, uint256 timestamp) external pure returns (uint32) {
        return _intervalAt(activeAt, period, timestamp);
    }

    /// @notice Deliver a result for an existing subscription.
    function deliverCompute(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) external onlyActiveNode {
        _deliverCompute(subscriptionId, deliveryInterval, input, output, proof, 0);
    }

    /// @dev 1 for a callback (period 0), else (timestamp - activeAt) / period + 1. A recurring
    ///      subscription reverts before `activeAt` (arithmetic panic 0x11), and with
    ///      SubscriptionCompleted when the interval does not fit a uint32 (past any frequency).
    function _intervalAt(uint32 activeAt, uint32 period, uint256 timestamp) internal pure returns (uint32) {
        if (period == 0) {
            return 1;
        }
        uint256 interval = (timestamp - activeAt) / period + 1;
        if (interval > type(uint32).max) {
            revert SubscriptionCompleted();
        }
        return uint32(interval);
    }

    /// @dev Deliver to a subscription: checks 1 to 7 (`_checkDelivery`), then the owner's callback
    ///      and checks 8 to 10 (`_callOwner`).
    function _deliverCompute(
        uint32 subscriptionId,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof,
        uint256 overhead
    ) internal {
        Delivery memory delivery = _checkDelivery(subscriptionId, deliveryInterval);
        delivery.overhead = overhead;
        _callOwner(delivery, input, output, proof);
    }

    /// @dev Delivery checks 1 to 7 of the spec, in order.
    function _checkDelivery(uint32 subscriptionId, uint32 deliveryInterval) private returns (Delivery memory) {
        Subscription storage sub = subscriptions[subscriptionId];
        address owner = sub.owner;
        if (owner == address(0)) {
            revert SubscriptionNotFound();
        }
        if (block.timestamp < sub.activeAt) {
            revert SubscriptionNotActive();
        }
        uint32 interval = _intervalAt(sub.activeAt, sub.period, block.timestamp);
        if (interval != deliveryInterval) {
            revert IntervalMismatch();
        }
        if (interval > sub.frequency) {
            revert SubscriptionCompleted();
        }
        if (tx.gasprice > sub.maxGasPrice) {
            revert GasPriceExceeded();
        }
        uint16 count = _countResponse(subscriptionId, interval, sub.redundancy);
        return Delivery(subscriptionId, owner, interval, count, sub.maxGasLimit, 0);
    }

    /// @dev Checks 8 to 10: call the owner's rawReceiveCompute, measure its gas against maxGasLimit,
    ///      emit SubscriptionFulfilled.
    function _callOwner(Delivery memory delivery, bytes memory input, bytes memory output, bytes memory proof)
        private
    {
        uint256 gasUsed = gasleft();
        IComputeReceiver(delivery.owner).rawReceiveCompute(
            delivery.subscriptionId, delivery.interval, delivery.count, msg.sender, input, output, proof
        );
        gasUsed -= gasleft();
        if (gasUsed + delivery.overhead + DELIVERY_OVERHEAD_WEI > delivery.maxGasLimit) {
            revert GasLimitExceeded();
        }
        emit SubscriptionFulfilled(delivery.subscriptionId, msg.sender);
    }

    /// @dev Checks 6 and 7: bump the interval's response count and mark the caller as answered.
    function _countResponse(uint32 subscriptionId, uint32 interval, uint16 redundancy) private returns (uint16) {
        bytes32 intervalKey = keccak256(abi.encode(subscriptionId, interval));
        uint16 count = redundancyCount[intervalKey];
        if (count == redundancy) {
            revert IntervalCompleted();
        }
        count += 1;
        redundancyCount[intervalKey] = count;
        bytes32 nodeKey = keccak256(abi.encode(subscriptionId, interval, msg.sender));
        if (nodeResponded[nodeKey]) {
            revert NodeRespondedAlready();
        }
        nodeResponded[nodeKey] = true;
        return count;
    }
}

/// @notice Delegated subscriptions: created from an owner's EIP-712 signature by whoever sends it.
contract EIP712Coordinator is Coordinator {
    string public constant EIP712_NAME = "InfernetCoordinator";
    string public constant EIP712_VERSION = "1";

    /// @notice Extra gas charged to a delegated delivery whose subscription already existed.
    uint256 public constant DELEGATEE_OVERHEAD_CACHED_WEI = 600;
    /// @notice Extra gas charged to a delegated delivery that created its subscription.
    uint256 public constant DELEGATEE_OVERHEAD_CREATE_WEI = 91200;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant SUBSCRIPTION_TYPEHASH = keccak256(
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
        "uint48 maxGasPrice,uint32 maxGasLimit,string containerId,bytes inputs)"
    );
    bytes32 private constant DELEGATE_TYPEHASH = keccak256(
        "DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)"
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
        "uint48 maxGasPrice,uint32 maxGasLimit,string containerId,bytes inputs)"
    );
    /// @notice The highest nonce used so far by each owner.
    mapping(address => uint32) public maxSubscriberNonce;

    /// @notice The id created for (owner, nonce), keyed by keccak256(abi.encode(owner, nonce)); 0 if none.
    mapping(bytes32 => uint32) public delegateCreatedIds;

    error InvalidSignature();
    error SignerMismatch();
    error SignatureExpired();

    /// @notice EIP-5267: the fields of the EIP-712 domain (name, version, chainId, verifyingContract).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", EIP712_NAME, EIP712_VERSION, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice Create `sub` from its owner's signature, or return the id (owner, nonce) already created.
    function createSubscriptionDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription calldata sub,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint32, bool) {
        return _createSubscriptionDelegatee(nonce, expiry, sub, v, r, s);
    }

    /// @notice Create (or fetch) a delegated subscription, then deliver to it.
    /// @dev `input`, `output` and `proof` are `memory` (the ABI is the same as `calldata`): with
    ///      them in calldata the legacy code generator runs out of stack slots, and viaIR makes
    ///      solc-js take 10 s or more per compilation.
    function deliverComputeDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription calldata sub,
        uint8 v,
        bytes32 r,
        bytes32 s,
        uint32 deliveryInterval,
        bytes memory input,
        bytes memory output,
        bytes memory proof
    ) external onlyActiveNode {
        (uint32 subscriptionId, bool cached) = _createSubscriptionDelegatee(nonce, expiry, sub, v, r, s);
        uint256 overhead = cached ? DELEGATEE_OVERHEAD_CACHED_WEI : DELEGATEE_OVERHEAD_CREATE_WEI;
        _deliverCompute(subscriptionId, deliveryInterval, input, output, proof, overhead);
    }

    /// @notice Test helper: the EIP-712 digest that createSubscriptionDelegatee verifies.
    function delegateeDigest(uint32 nonce, uint32 expiry, Subscription calldata sub) external view returns (bytes32) {
        return _delegateeDigest(nonce, expiry, sub);
    }

    function _createSubscriptionDelegatee(
        uint32 nonce,
        uint32 expiry,
        Subscription calldata sub,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) internal returns (uint32, bool) {
        bytes32 key = keccak256(abi.encode(sub.owner, nonce));
        uint32 existing = delegateCreatedIds[key];
        if (existing != 0) {
            return (existing, true);
        }
        if (uint32(block.timestamp) >= expiry) {
            revert SignatureExpired();
        }
        address recovered = _recover(_delegateeDigest(nonce, expiry, sub), v, r, s);
        if (recovered != IDelegator(sub.owner).signer()) {
            revert SignerMismatch();
        }
        uint32 subscriptionId = id++;
        subscriptions[subscriptionId] = sub;
        delegateCreatedIds[key] = subscriptionId;
        emit SubscriptionCreated(subscriptionId);
        if (nonce > maxSubscriberNonce[sub.owner]) {
            maxSubscriberNonce[sub.owner] = nonce;
        }
        return (subscriptionId, false);
    }

    function _domainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256(bytes(EIP712_NAME)),
                keccak256(bytes(EIP712_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }

    function _subscriptionHash(Subscription calldata sub) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                SUBSCRIPTION_TYPEHASH,
                sub.owner,
                sub.activeAt,
                sub.period,
                sub.frequency,
                sub.redundancy,
                sub.maxGasPrice,
                sub.maxGasLimit,
                keccak256(bytes(sub.containerId)),
                keccak256(sub.inputs)
            )
        );
    }

    function _delegateeDigest(uint32 nonce, uint32 expiry, Subscription calldata sub) internal view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(DELEGATE_TYPEHASH, nonce, expiry, _subscriptionHash(sub)));
        return keccak256(abi.encodePacked(hex"1901", _domainSeparator(), structHash));
    }

    /// @dev As the SDK's solady ECDSA.recover(hash, v, r, s): the ecrecover precompile alone
    /// decides (v 27/28, 0 < r, s < n), so the high-s twin of a signature is accepted too;
    /// only a failed recovery reverts.
    function _recover(bytes32 digest, uint8 v, bytes32 r, bytes32 s) internal pure returns (address) {
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) {
            revert InvalidSignature();
        }
        return signer;
    }
}
