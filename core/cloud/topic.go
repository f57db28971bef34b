// Package cloud is the device's link to the cloud: the MQTT topics and
// messages of the Alibaba Cloud IoT platform's OTA protocol, the platform's
// MQTT sign-in (both sides of it), and a client that keeps a device connected,
// subscribed and reporting.
//
// The wire formats follow what devices built on the platform's C SDK
// (iotkit-embedded src/ota, src/dev_sign) and AliOS Things uOTA
// (ota_transport_mqtt.c) send and accept, so that a device that speaks to the
// platform can speak to otaport and the other way round. otaport's additions
// live in fields such a device ignores; docs/protocol.md lists them.
//
// This package does not download, verify or install firmware: an order is
// handed to the caller (the device agent), which drives the upgrade engine
// and reports progress back through the Client.
package cloud

import "strings"

// Topic kinds, the second path element of every OTA topic.
const (
	KindInform   = "inform"   // device -> cloud: the running version
	KindUpgrade  = "upgrade"  // cloud -> device: an upgrade order
	KindProgress = "progress" // device -> cloud: progress or failure of an upgrade
	KindRequest  = "request"  // device -> cloud: ask for the pending order
)

// topicPrefix is shared by every OTA topic (iotkit-embedded ota_mqtt.c,
// otamqtt_GenTopicName: "/ota/device/%s/%s/%s").
const topicPrefix = "/ota/device/"

// TopicSet holds the four OTA topics of one device.
type TopicSet struct {
	Inform   string // the device publishes its version here
	Upgrade  string // the device subscribes here for orders
	Progress string // the device publishes progress here
	Request  string // the device asks for the pending order here
	Release  string // the device subscribes here for otaserve's statements (ReleaseTopic)
	KeySet   string // the device subscribes here for its product's key sets (KeySetTopic)
}

// Topics returns the OTA topics of the device {pk}/{dn}.
func Topics(pk, dn string) TopicSet {
	t := func(kind string) string { return topicPrefix + kind + "/" + pk + "/" + dn }
	return TopicSet{
		Inform:   t(KindInform),
		Upgrade:  t(KindUpgrade),
		Progress: t(KindProgress),
		Request:  t(KindRequest),
		Release:  ReleaseTopic(pk),
		KeySet:   KeySetTopic(pk),
	}
}

// ParseTopic splits an OTA topic into its kind (one of the Kind constants),
// product key and device name. ok is false for any other topic, for a topic
// with empty or extra levels, and for one with MQTT wildcards, so that a
// subscription filter is never mistaken for a device's topic.
func ParseTopic(topic string) (kind, pk, dn string, ok bool) {
	rest, found := strings.CutPrefix(topic, topicPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	switch parts[0] {
	case KindInform, KindUpgrade, KindProgress, KindRequest:
	default:
		return "", "", "", false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "+#\x00") {
			return "", "", "", false
		}
	}
	return parts[0], parts[1], parts[2], true
}
