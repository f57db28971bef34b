package natsauth

import (
	"fmt"
	"strings"
)

// Subject is the NATS subject the NATS server's MQTT gateway makes of an
// MQTT topic name or filter, and so the subject a permission must name to
// allow that topic. The server's rule (mqttToNATSSubjectConversion in
// server/mqtt.go, v2.15): each level becomes a token, joined by '.'; an
// empty level (a leading or trailing '/', or "//") becomes the token "/";
// a '.' inside a level becomes "//"; the wildcards '+' and '#' become '*'
// and '>'. So the platform's /ota/device/upgrade/{pk}/{dn} is
// "/.ota.device.upgrade.{pk}.{dn}", and a device named "a.b" is "a//b"
// there. The server refuses white space in a topic; so does Subject, and
// it refuses '*' and '>' inside a level, which the server would pass on as
// wildcards of the subject.
func Subject(topic string) (string, error) {
	if topic == "" {
		return "", fmt.Errorf("topic is empty")
	}
	levels := strings.Split(topic, "/")
	for i, l := range levels {
		switch {
		case l == "":
			levels[i] = "/"
		case l == "+":
			levels[i] = "*"
		case l == "#" && i == len(levels)-1:
			levels[i] = ">"
		case strings.ContainsAny(l, "+#*> \t\r\n\f\x7f"):
			return "", fmt.Errorf("topic %q: level %q holds a wildcard or white space the NATS server cannot map", topic, l)
		default:
			levels[i] = strings.ReplaceAll(l, ".", "//")
		}
	}
	return strings.Join(levels, "."), nil
}

// permissions are the subjects a user needs to use topics (names or
// filters): each one's Subject, and for a filter ending in "/#" its parent
// too, since '#' matches the parent level in MQTT and the server
// subscribes to both subjects for it ("/ota/device/#" is "/.ota.device.>"
// and "/.ota.device").
func permissions(topics []string) ([]string, error) {
	var out []string
	for _, t := range topics {
		s, err := Subject(t)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if parent, ok := strings.CutSuffix(t, "/#"); ok && parent != "" {
			p, err := Subject(parent)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}
