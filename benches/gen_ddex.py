#!/usr/bin/env python3
"""Writes one large synthetic ERN 4.3 NewReleaseMessage for the import benchmark
(benches/README.md, "DDEX import"): RELEASES albums of TRACKS tracks each, every album with a
worldwide-minus streaming deal and an EU download deal, and every track with a TrackRelease
deal (so the track deal sets go to the bulk CSV). Fixed ids, no randomness.

usage: gen_ddex.py RELEASES TRACKS > message.xml
"""
import sys

releases, tracks = int(sys.argv[1]), int(sys.argv[2])
w = sys.stdout.write
w('<?xml version="1.0" encoding="UTF-8"?>\n')
w('<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43" MessageSchemaVersionId="ern/43">\n')
w("<MessageHeader><MessageId>BENCH-1</MessageId>"
  "<MessageCreatedDateTime>2025-01-01T00:00:00Z</MessageCreatedDateTime></MessageHeader>\n")
w("<PartyList><Party><PartyReference>PL</PartyReference>"
  "<PartyName><FullName>Bench Records</FullName></PartyName></Party></PartyList>\n")
w("<ResourceList>\n")
for r in range(releases):
    for t in range(tracks):
        w(f"<SoundRecording><ResourceReference>A{r}_{t}</ResourceReference>"
          f"<Type>MusicalWorkSoundRecording</Type><SoundRecordingEdition><ResourceId>"
          f"<ISRC>QZBN{r:06d}{t:02d}</ISRC></ResourceId></SoundRecordingEdition>"
          f"<DisplayTitleText>Track {t} of album {r}</DisplayTitleText>"
          f"<Duration>PT3M30S</Duration></SoundRecording>\n")
w("</ResourceList>\n<ReleaseList>\n")
for r in range(releases):
    items = "".join(f"<ResourceGroupContentItem><ReleaseResourceReference>A{r}_{t}"
                    f"</ReleaseResourceReference></ResourceGroupContentItem>" for t in range(tracks))
    w(f"<Release><ReleaseReference>R{r}</ReleaseReference><ReleaseType>Album</ReleaseType>"
      f"<ReleaseId><ICPN>{5000000000000 + r}</ICPN></ReleaseId>"
      f"<ReleaseLabelReference>PL</ReleaseLabelReference><ResourceGroup>{items}</ResourceGroup></Release>\n")
    for t in range(tracks):
        w(f"<TrackRelease><ReleaseReference>T{r}_{t}</ReleaseReference>"
          f"<ReleaseResourceReference>A{r}_{t}</ReleaseResourceReference></TrackRelease>\n")
w("</ReleaseList>\n<DealList>\n")
stream = ("<Deal><DealTerms><TerritoryCode>Worldwide</TerritoryCode>"
          "<ExcludedTerritoryCode>CU</ExcludedTerritoryCode><ExcludedTerritoryCode>KP</ExcludedTerritoryCode>"
          "<ValidityPeriod><StartDate>2025-01-01</StartDate></ValidityPeriod>"
          "<CommercialModelType>SubscriptionModel</CommercialModelType>"
          "<CommercialModelType>AdvertisementSupportedModel</CommercialModelType>"
          "<UseType>OnDemandStream</UseType><UseType>NonInteractiveStream</UseType></DealTerms></Deal>")
download = ("<Deal><DealTerms><TerritoryCode>2123</TerritoryCode>"
            "<ValidityPeriod><StartDate>2025-01-01</StartDate><EndDate>2027-12-31</EndDate></ValidityPeriod>"
            "<CommercialModelType>PayAsYouGoModel</CommercialModelType>"
            "<UseType>PermanentDownload</UseType></DealTerms></Deal>")
single = ("<Deal><DealTerms><TerritoryCode>DE</TerritoryCode><TerritoryCode>AT</TerritoryCode>"
          "<ValidityPeriod><StartDate>2025-02-01</StartDate></ValidityPeriod>"
          "<CommercialModelType>SubscriptionModel</CommercialModelType>"
          "<UseType>OnDemandStream</UseType></DealTerms></Deal>")
for r in range(releases):
    w(f"<ReleaseDeal><DealReleaseReference>R{r}</DealReleaseReference>{stream}{download}</ReleaseDeal>\n")
    for t in range(tracks):
        w(f"<ReleaseDeal><DealReleaseReference>T{r}_{t}</DealReleaseReference>{single}</ReleaseDeal>\n")
w("</DealList>\n</ern:NewReleaseMessage>\n")
