import { useCallback } from 'react'
import { useUi, type Language } from '../../../stores/ui'

// The strings of the registered-versions table, the deployments list and the evaluation
// scores of the fine-tuning page, in the i18n dictionaries' {var} template form. They sit
// beside the components that use them until they move into i18n/en.ts and ko.ts
// (as 'finetune.<key>'); useFt() reads the same language setting as useT().
const en = {
  registered: 'Registered versions',
  registeredHelp: 'Every version in the model registry, newest first, with its aliases and the evaluation gate’s latest verdict. Scores are the version’s, with the base model’s in brackets.',
  noVersions: 'No registered versions yet.',
  versionsOf: 'Versions of {name}',
  aliases: 'Aliases',
  gate: 'Gate',
  created: 'Created',
  actions: 'Actions',
  notEvaluated: 'Not evaluated',
  forced: 'forced',
  heldout: 'held-out',
  regression: 'regression',
  scoreLine: '{split}: keyword {keyword}, perplexity {perplexity}',
  leakCount: '{count} leak(s)',
  reasons: 'Reasons ({count})',
  rollbackToBase: 'Roll back to base',
  rolledBackToBase: '{name} is back on its base model',
  deployments: 'Deployed versions',
  deploymentsHelp: 'Versions served as models. Undeploy stops serving one (its A/B split, if any, ends too).',
  noDeployments: 'No version is deployed.',
  undeploy: 'Undeploy',
  notServed: 'not served by this gateway yet',
  undeployed: '{id} is no longer served',
} as const

export type FinetuneKey = keyof typeof en

const ko: Record<FinetuneKey, string> = {
  registered: '등록된 버전',
  registeredHelp: '모델 레지스트리의 모든 버전(최신순)과 별칭, 평가 게이트의 최근 판정입니다. 점수는 버전의 점수이며 괄호 안은 기반 모델의 점수입니다.',
  noVersions: '등록된 버전이 아직 없습니다.',
  versionsOf: '{name}의 버전',
  aliases: '별칭',
  gate: '게이트',
  created: '생성',
  actions: '작업',
  notEvaluated: '평가 전',
  forced: '강제',
  heldout: '보류 세트',
  regression: '회귀 세트',
  scoreLine: '{split}: 키워드 {keyword}, 퍼플렉서티 {perplexity}',
  leakCount: '누출 {count}건',
  reasons: '사유 ({count})',
  rollbackToBase: '기반 모델로 롤백',
  rolledBackToBase: '{name}이(가) 기반 모델로 돌아갔습니다',
  deployments: '배포된 버전',
  deploymentsHelp: '모델로 제공 중인 버전입니다. 배포 해제하면 더 이상 제공되지 않습니다(A/B 분할도 함께 끝납니다).',
  noDeployments: '배포된 버전이 없습니다.',
  undeploy: '배포 해제',
  notServed: '이 게이트웨이에서는 아직 제공되지 않음',
  undeployed: '{id}은(는) 더 이상 제공되지 않습니다',
}

const dictionaries: Record<Language, Record<FinetuneKey, string>> = { en, ko }

export type FinetuneTranslate = (key: FinetuneKey, vars?: Record<string, string | number>) => string

export function useFt(): FinetuneTranslate {
  const language = useUi((s) => s.language)
  return useCallback(
    (key, vars) => {
      const template = dictionaries[language][key] ?? en[key]
      return vars ? template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole)) : template
    },
    [language],
  )
}
